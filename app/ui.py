"""The Gradio app: collections, upload, chat that streams, and the evidence the model read.

Every handler is a thin call into QAService, storage or ingest; the UI keeps, per answer, the JSON
object of `hsa ask --json`, so clicking an earlier answer shows its evidence again."""

import os
import re
import shutil
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from app.demo import demo_pdf  # noqa: E402
from app.render import render_chunk  # noqa: E402
from app.service import QAService  # noqa: E402
from ingest import IngestEvent, ingest  # noqa: E402
from storage import Store, StoreError  # noqa: E402

DEMO = "demo"
EVIDENCE_HEADERS = ["rank", "score", "page", "file", "text"]
TOKEN_HEADERS = ["chunk", "weight", "page", "file", "text"]
SEARCH_HEADERS = ["chunk", "document", "page", "text"]
CSS = "#evidence-image img {border: 1px solid #ccc;} .hsa-small {font-size: 0.85em;}"


def safe_name(name: str) -> str:
    """A file name with no folders, no leading dots and only plain characters (uploads land in the store)."""
    base = re.sub(r"[^A-Za-z0-9._ -]", "_", Path(name.replace("\\", "/")).name).strip(" .")
    return base[:120] or "upload"


def _file(chunk: dict) -> str:
    """The file a chunk came from, by name: PDF titles often fall back to a long first line."""
    return Path(chunk.get("path") or chunk.get("document") or "").name


def _short(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def build_ui(service: QAService) -> gr.Blocks:
    store, encoder = service.store, service.encoder
    root = store.root
    lock = service.lock

    def collection_names() -> list[str]:
        with lock:
            return [c.name for c in store.collections()]

    def model_info(collection: str | None) -> str:
        cfg = service.model.cfg
        lines = [
            f"**Model** `{encoder.name}` · {service.model.num_parameters() / 1e6:.1f}M parameters · "
            f"chunk {cfg.chunk_size} tokens · window {cfg.window} · top-k {cfg.top_k} · {service.device}"
            + (
                f" · answers written from its {service.reread} best evidence chunks and from its best alone,"
                " the surer kept, HSA off"
                if service.reread
                else ""
            )
        ]
        with lock:
            stats = {c.name: c for c in store.collections()}
        if collection in stats:
            c = stats[collection]
            lines.append(
                f"**Collection** `{c.name}` · {c.documents} documents · {c.chunks} chunks · "
                f"{c.tokens:,} tokens · {c.bytes / 2**20:.1f} MiB of memory on disk"
            )
        return "  \n".join(lines)

    def documents_rows(collection: str | None) -> list[list]:
        if not collection:
            return []
        try:
            with lock:
                docs = store.documents(collection)
        except StoreError:
            return []
        return [
            [
                d["id"],
                d["title"] or Path(d["path"]).name,
                d["pages"],
                d["n_tokens"],
                d["status"],
                d["error"] or "",
            ]
            for d in docs
        ]

    def refresh(collection: str | None):
        names = collection_names()
        value = collection if collection in names else (names[0] if names else None)
        return (
            gr.update(choices=names, value=value),
            documents_rows(value),
            model_info(value),
            gr.update(variant="secondary" if names else "primary"),  # the first step on an empty store
        )

    def uploads(collection: str) -> Path:
        folder = root / "uploads" / safe_name(collection)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def run_ingest(paths: list[str], collection: str, progress=None) -> tuple[list[list], dict]:
        """Copy uploads into the store (sanitised names), ingest them; per-file status rows and the report."""
        collection = (collection or "default").strip()
        folder = uploads(collection)
        copies = []
        for p in map(Path, paths):
            dest = folder / safe_name(p.name)
            if p.resolve() != dest.resolve():
                shutil.copyfile(p, dest)
            copies.append(dest)
        status: dict[str, list] = {str(c): [c.name, "stored", ""] for c in copies}
        done = [0]

        def on_event(e: IngestEvent) -> None:
            row = status.setdefault(e.path, [Path(e.path).name, "", ""])
            if e.kind in ("added", "replaced", "skipped", "failed"):
                row[1] = {"skipped": "skipped (duplicate)"}.get(
                    e.kind, "stored" if e.kind != "failed" else "failed"
                )
                row[2] = e.message
                done[0] += 1
                if progress is not None:
                    progress(done[0] / max(len(copies), 1), desc=f"{row[0]}: {row[1]}")
            elif e.kind == "warning":
                row[2] = e.message

        with Store(root) as writer:
            report = ingest(copies, writer, encoder, collection, progress=False, on_event=on_event)
        return list(status.values()), report.to_dict()

    def ui_ingest(files, collection, progress=gr.Progress()):
        if not files:
            raise gr.Error("Choose one or more files to add.")
        paths = [f if isinstance(f, str) else f.name for f in files]
        rows, _ = run_ingest(paths, collection, progress)
        return (rows, *refresh(collection or "default"))

    def ui_demo(progress=gr.Progress()):
        pdf = demo_pdf(uploads(DEMO) / "hsa-docqa-docs.pdf")
        rows, _ = run_ingest([str(pdf)], DEMO, progress)
        return (rows, *refresh(DEMO))

    def ui_delete(collection, document):
        if not collection or not str(document).strip():
            raise gr.Error("Pick a collection and give a document id or path.")
        with Store(root) as writer, writer.writing():
            try:
                n = writer.delete_documents(collection, str(document).strip())
            except StoreError as e:
                raise gr.Error(str(e)) from None
        gr.Info(f"Deleted {n} document(s) from {collection}.")
        return refresh(collection)

    def evidence_rows(answer: dict | None) -> list[list]:
        if not answer:
            return []
        return [
            [i + 1, round(c["score"], 3), c["page"], _file(c), _short(c["text"])]
            for i, c in enumerate(answer["chunks"])
        ]

    def chunk_image(chunk: dict | None):
        if not chunk or not chunk.get("page") or not chunk.get("path", "").lower().endswith(".pdf"):
            return None
        try:
            return render_chunk(chunk["path"], chunk["page"], chunk.get("bbox"))
        except (OSError, ValueError) as e:
            gr.Warning(str(e))
            return None

    def token_choices(answer: dict | None):
        if not answer:
            return gr.update(choices=[], value=None)
        choices = [(f"{i + 1}: {t['token']!r}", i) for i, t in enumerate(answer["per_token"])]
        return gr.update(choices=choices, value=None)

    def answer_dict(ans) -> dict:
        out = ans.to_json()
        paths = {e.chunk_id: e.path for e in ans.chunks}
        for c in out["chunks"]:
            c["path"] = paths[c["chunk_id"]]
        return out

    def respond(message, history, collection, max_tokens, temperature, top_k, answers):
        message = (message or "").strip()
        if not message:
            raise gr.Error("Type a question.")
        if not collection:
            raise gr.Error("Pick a collection first, or build the demo collection.")
        history = list(history or [])
        turns = [
            (history[i]["content"], history[i + 1]["content"])
            for i in range(len(history) - 1)
            if history[i]["role"] == "user" and history[i + 1]["role"] == "assistant"
        ]
        history += [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        answers = list(answers or [])
        try:
            stream = service.stream(
                message,
                collection,
                max_new_tokens=int(max_tokens),
                temperature=float(temperature),
                history=turns,
                top_k=int(top_k),
            )
            for ans in stream:
                history[-1]["content"] = ans.answer or "…"
                if not ans.done:
                    yield history, answers, gr.skip(), gr.skip(), gr.skip(), ""
        except (StoreError, ValueError) as e:
            raise gr.Error(str(e)) from None
        if not ans.answer:
            history[-1]["content"] = "(no answer)"
        current = answer_dict(ans)
        answers.append(current)
        first = current["chunks"][0] if current["chunks"] else None
        yield history, answers, evidence_rows(current), chunk_image(first), token_choices(current), ""

    def select_message(answers, evt: gr.SelectData):
        """Clicking an assistant message shows that answer's evidence."""
        index = evt.index if isinstance(evt.index, int) else evt.index[0]
        n_assistant = index // 2  # messages alternate user, assistant
        if not answers or n_assistant >= len(answers):
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        answer = answers[n_assistant]
        first = answer["chunks"][0] if answer["chunks"] else None
        return n_assistant, evidence_rows(answer), chunk_image(first), token_choices(answer)

    def select_evidence(answers, shown, evt: gr.SelectData):
        if not answers:
            return None
        answer = answers[shown if shown is not None else -1]
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return chunk_image(answer["chunks"][row]) if row < len(answer["chunks"]) else None

    def select_token(answers, shown, token):
        if not answers or token is None:
            return []
        answer = answers[shown if shown is not None else -1]
        info = {c["chunk_id"]: c for c in answer["chunks"]}
        rows = []
        for item in answer["per_token"][int(token)]["chunks"]:
            c = info.get(item["chunk_id"], {})
            rows.append(
                [
                    item["chunk_id"],
                    round(item["weight"], 3),
                    c.get("page"),
                    _file(c),
                    _short(c.get("text", "")),
                ]
            )
        return rows

    def keyword_search(query, collection):
        query = (query or "").strip()
        if not query or not collection:
            return []
        with lock:
            rows = store.db.execute(
                """select k.id, coalesce(d.title, d.path), k.page, k.text from chunks_fts f
                   join chunks k on k.rowid = f.rowid join documents d on d.id = k.document_id
                   where chunks_fts match ? and d.collection = ? and d.status = 'ok'
                   order by f.rank limit 10""",
                [store.db.quote_fts(query), collection],
            ).fetchall()
        return [[r[0], r[1], r[2], _short(r[3])] for r in rows]

    def api_ask(
        question: str,
        collection: str = "default",
        max_tokens: int = 64,
        temperature: float = 0.0,
        top_k: int = 0,
    ) -> dict:
        """The object of `hsa ask --json`: answer, chunks (most relevant first), per_token, timings."""
        try:
            ans = service.ask(
                question,
                collection,
                max_new_tokens=int(max_tokens),
                temperature=float(temperature),
                top_k=int(top_k) or None,
            )
        except (StoreError, ValueError) as e:
            raise gr.Error(str(e)) from None
        return ans.to_json()

    def api_ingest(files, collection):
        paths = [f if isinstance(f, str) else f.name for f in (files or [])]
        if not paths:
            raise gr.Error("no files given")
        rows, report = run_ingest(paths, collection)
        report["files"] = [{"file": r[0], "status": r[1], "detail": r[2]} for r in rows]
        return report

    with gr.Blocks(title="HSA DocQA") as demo:
        gr.Markdown("## HSA DocQA — ask your documents, see what the model read")
        info = gr.Markdown(elem_classes="hsa-small")
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                collection = gr.Dropdown(label="Collection", allow_custom_value=True, interactive=True)
                demo_btn = gr.Button("Build the demo collection (this project's docs)", variant="primary")
                upload = gr.File(
                    label="Add documents (PDF, text, Markdown, HTML, JSONL)",
                    file_count="multiple",
                    type="filepath",
                )
                ingest_btn = gr.Button("Add to collection")
                ingest_status = gr.Dataframe(
                    headers=["file", "status", "detail"],
                    label="Upload status",
                    interactive=False,
                    wrap=True,
                    elem_id="upload-status",
                )
                with gr.Accordion("Documents", open=False):
                    docs = gr.Dataframe(
                        headers=["id", "document", "pages", "tokens", "status", "error"],
                        interactive=False,
                        wrap=True,
                    )
                    doc_to_delete = gr.Textbox(label="Document id or path to delete")
                    delete_btn = gr.Button("Delete document", variant="stop")
                with gr.Accordion("Settings", open=False):
                    max_tokens = gr.Slider(1, 256, value=64, step=1, label="Answer length (tokens)")
                    temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="Temperature (0 = greedy)")
                    top_k = gr.Slider(
                        1,
                        64,
                        value=service.model.cfg.top_k,
                        step=1,
                        label="Top-k: chunks each token reads per layer",
                    )
            with gr.Column(scale=2):
                chatbot = gr.Chatbot(label="Chat", height=460, buttons=["copy"], elem_id="chat")
                with gr.Row():
                    question = gr.Textbox(
                        placeholder="Ask a question about the collection…",
                        show_label=False,
                        scale=5,
                        elem_id="question",
                    )
                    ask_btn = gr.Button("Ask", variant="primary", scale=1, elem_id="ask")
                with gr.Accordion(
                    "Keyword search (full text), to compare with the model's choice", open=False
                ):
                    search_box = gr.Textbox(placeholder="words to search", show_label=False)
                    search_results = gr.Dataframe(headers=SEARCH_HEADERS, interactive=False, wrap=True)
            with gr.Column(scale=2, elem_id="evidence"):
                gr.Markdown("**Evidence**: the chunks the model read for the selected answer (click a row)")
                evidence = gr.Dataframe(
                    headers=EVIDENCE_HEADERS, interactive=False, wrap=True, elem_id="evidence-table"
                )
                page_image = gr.Image(label="Page", type="pil", interactive=False, elem_id="evidence-image")
                token = gr.Dropdown(label="Answer token → the chunks it read", choices=[], interactive=True)
                token_chunks = gr.Dataframe(headers=TOKEN_HEADERS, interactive=False, wrap=True)
        answers = gr.State([])
        shown = gr.State(None)

        refresh_outputs = [collection, docs, info, demo_btn]
        demo.load(refresh, [collection], refresh_outputs, api_visibility="private")
        collection.change(
            lambda c: (documents_rows(c), model_info(c)), [collection], [docs, info], api_visibility="private"
        )
        ingest_btn.click(
            ui_ingest, [upload, collection], [ingest_status, *refresh_outputs], api_visibility="private"
        )
        demo_btn.click(ui_demo, None, [ingest_status, *refresh_outputs], api_visibility="private")
        delete_btn.click(ui_delete, [collection, doc_to_delete], refresh_outputs, api_visibility="private")
        chat_inputs = [question, chatbot, collection, max_tokens, temperature, top_k, answers]
        chat_outputs = [chatbot, answers, evidence, page_image, token, question]
        for trigger in (question.submit, ask_btn.click):
            trigger(respond, chat_inputs, chat_outputs, api_visibility="private").then(
                lambda a: len(a) - 1, [answers], [shown], api_visibility="private"
            )
        chatbot.select(
            select_message, [answers], [shown, evidence, page_image, token], api_visibility="private"
        )
        evidence.select(select_evidence, [answers, shown], [page_image], api_visibility="private")
        token.change(select_token, [answers, shown, token], [token_chunks], api_visibility="private")
        search_box.submit(
            keyword_search, [search_box, collection], [search_results], api_visibility="private"
        )

        gr.api(api_ask, api_name="ask")
        api_files = gr.File(file_count="multiple", visible=False)
        api_collection = gr.Textbox(visible=False)
        api_result = gr.JSON(visible=False)
        gr.Button(visible=False).click(
            api_ingest, [api_files, api_collection], [api_result], api_name="ingest"
        )
    return demo

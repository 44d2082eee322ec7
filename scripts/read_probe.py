"""Where a retrofit's reading of real documents fails (docs/retrofit.md, twelfth session).

The 56 R FAQ questions of docqa_real, each answered five ways:
  base+kw      the base reading the top-3 keyword chunks in its window (docqa_real's baseline)
  ours+kw      the retrofit reading the same chunks in its window, no memory
  ours+kw+mem  the same, with the PDF's chunk memory as well (what HSA adds to a window that holds the answer)
  ours         the retrofit over the memory alone (docqa_real's HSA row)
  base+ours    the base reading the retrofit's own top-3 evidence chunks (its selection as a retriever)

    PYTHONPATH=. python scripts/read_probe.py [--model models/smollm2-hsa] [--json out.json]
"""

import argparse
import json
import tempfile
from pathlib import Path

from app.docqa_real import COLLECTION, PDF, base_answer, keyword_chunks, load_questions
from app.service import QAService
from hsa_core.smollm2 import fetch_gguf, load_smollm2
from ingest import Encoder, ingest
from storage import Store

WAYS = ("base+kw", "ours+kw", "ours+kw+mem", "ours", "base+ours")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/smollm2-hsa")
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--json", type=Path, help="write every answer here")
    args = ap.parse_args()
    base = load_smollm2(fetch_gguf(), window=2048)
    encoder, _ = Encoder.load(args.model, "cpu")
    ours = encoder.model
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "store") as store:
        ingest([PDF], store, encoder, COLLECTION, progress=False)
        service = QAService(store, encoder, reread=0)  # through HSA
        memory = service.memory(COLLECTION)
        for q in load_questions():
            kw = [r[2] for r in keyword_chunks(store, q.question, 3)]
            asked = service.ask(q.question, COLLECTION, max_new_tokens=args.max_tokens)
            picked = [c.text for c in asked.chunks[:3]]
            answers = {
                "base+kw": base_answer(base, q.question, kw, args.max_tokens),
                "ours+kw": base_answer(ours, q.question, kw, args.max_tokens),
                "ours+kw+mem": base_answer(ours, q.question, kw, args.max_tokens, memory=memory),
                "ours": asked.answer,
                "base+ours": base_answer(base, q.question, picked, args.max_tokens),
            }
            row = {"question": q.question, "answers": q.answers, **answers}
            row["correct"] = {w: q.is_answered_by(a) for w, a in answers.items()}
            rows.append(row)
            marks = " ".join(f"{w}={int(row['correct'][w])}" for w in WAYS)
            print(f"{q.question[:50]:50} {marks}", flush=True)
    print("| way | answered |\n|---|---|")
    for w in WAYS:
        print(f"| {w} | {sum(r['correct'][w] for r in rows)}/{len(rows)} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

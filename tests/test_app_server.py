"""The real server: `hsa serve` in a subprocess on loopback, driven by gradio_client and by Chromium."""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_app import assert_pages_hold_their_chunks, make_pdf, memo_pages

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    root: Path, *extra: str, env: dict | None = None, model: str | None = "test"
) -> tuple[subprocess.Popen, str]:
    """`hsa serve` on a free loopback port (model None: the shipped one); returns once it answers HTTP."""
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
    cmd = [sys.executable, "-m", "app.cli", "serve", "--store", str(root / "store")]
    cmd += ["--model", model] if model else []
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 300  # on a fresh machine the default model's first start fetches its base
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"hsa serve exited: {proc.stdout.read()}")
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("hsa serve did not answer within 300 s")
    return proc, url


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    proc, url = start_server(root, model=None)
    yield url, root
    proc.terminate()
    proc.wait(timeout=30)


def test_gradio_client_ingests_and_asks(server):
    """The shipped model finds a pass key in an uploaded PDF and ranks the chunk on its page first."""
    from gradio_client import Client, handle_file

    url, root = server
    pdf = make_pdf(root / "../ops memo.pdf", memo_pages("52817", key_page=4))
    client = Client(url, verbose=False)
    report = client.predict([handle_file(str(pdf))], "api-docs", api_name="/ingest")
    assert report["added"] == 1 and report["files"][0]["status"] == "stored"
    again = client.predict([handle_file(str(pdf))], "api-docs", api_name="/ingest")
    assert again["added"] == 0 and again["files"][0]["status"] == "skipped (duplicate)"
    answer = client.predict("What is the pass key?", "api-docs", 12, 0.0, api_name="/ask")
    assert set(answer) == {"answer", "chunks", "per_token", "timings", "readings"}
    assert "52817" in answer["answer"]
    assert answer["chunks"][0]["page"] == 4, answer["chunks"][:3]
    assert "52817" in answer["chunks"][0]["text"]
    assert_pages_hold_their_chunks(answer["chunks"], pdf)
    # the upload was stored under a sanitised name inside the store
    assert (root / "store" / "uploads" / "api-docs" / "ops memo.pdf").is_file()


def test_unknown_collection_is_a_clear_error(server):
    from gradio_client import Client

    url, _ = server
    with pytest.raises(Exception, match="no collection 'missing'"):
        Client(url, verbose=False).predict("hello?", "missing", 4, 0.0, api_name="/ask")


@pytest.mark.skipif(not shutil.which(CHROMIUM) and not os.environ.get("CI"), reason="no Debian chromium here")
def test_browser_asks_and_sees_the_evidence(server):
    from playwright.sync_api import sync_playwright

    url, _ = server
    ARTIFACTS.mkdir(exist_ok=True)
    flags = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=flags)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(url)
        page.get_by_role("button", name="Build the demo collection").click()
        page.wait_for_function("document.body.innerText.includes('hsa-docqa-docs.pdf')", timeout=120_000)
        assert page.locator("text=Collection").first.is_visible()
        # add a memo to the demo collection through the upload box, then ask about it
        memo = make_pdf(ARTIFACTS / "operations-memo.pdf", memo_pages("52817", key_page=4))
        page.locator("input[type=file]").first.set_input_files(str(memo))
        page.wait_for_function("document.body.innerText.includes('operations-memo.pdf')", timeout=60_000)
        page.get_by_role("button", name="Add to collection").click()
        page.wait_for_function(
            "document.querySelector('#upload-status').innerText.includes('operations-memo.pdf')",
            timeout=120_000,
        )
        assert "stored" in page.locator("#upload-status").inner_text()
        # the demo docs hold a pass key of their own (docs/prompt-format.md: "What is the pass key?" ->
        # 71432), so the question quotes the memo's own words, as a user asking about the memo would
        page.fill("#question textarea", "What is the pass key? Remember it.")
        page.click("#ask")
        page.wait_for_selector("#evidence-image img", timeout=120_000)
        page.wait_for_function("document.querySelector('#chat').innerText.includes('52817')", timeout=60_000)
        page.wait_for_function(
            "document.querySelector('#evidence-table').innerText.includes('operations-memo.pdf')",
            timeout=60_000,
        )
        table = page.locator("#evidence-table").inner_text()
        assert table.split()[:5] == ["rank", "score", "page", "file", "text"]
        # rows as the table shows them (one cell a line): rank, score, page, file, then the chunk's text
        starts = list(re.finditer(r"^(\d+)\n[\d.]+\n(\d*)\n(\S+)\n", table, re.M))
        rows = [
            (*m.groups(), table[m.end() : n.start() if n else None])
            for m, n in zip(starts, starts[1:] + [None], strict=True)
        ]
        # the first row holding the key is the memo's page 4, in the top 3: the demo docs quote "What is
        # the pass key?" itself, and the lexical part of the landmarks ranks that chunk near the top too
        holding = [r for r in rows if "52817" in r[3]]
        assert holding and holding[0][1:3] == ("4", "operations-memo.pdf"), rows[:5]
        assert int(holding[0][0]) <= 3, rows[:5]
        page.screenshot(path=str(ARTIFACTS / "ui-answer.png"), full_page=True)
        browser.close()
    assert (ARTIFACTS / "ui-answer.png").stat().st_size > 10_000


def test_safe_names_keep_uploads_inside_the_store():
    from app.ui import safe_name

    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("..\\..\\boot.ini") == "boot.ini"
    assert safe_name("report (final).pdf") == "report _final_.pdf"
    assert safe_name("...") == "upload" and safe_name(".hidden") == "hidden"


def test_auth_and_upload_limit(tmp_path):
    from gradio_client import Client, handle_file

    proc, url = start_server(tmp_path, "--max-upload-mb", "1", env={"HSA_AUTH": "ana:s3cret"})
    try:
        from gradio_client.exceptions import AuthenticationError

        with pytest.raises(AuthenticationError, match="credentials were not provided"):
            Client(url, verbose=False)
        client = Client(url, auth=("ana", "s3cret"), verbose=False)
        big = tmp_path / "big.txt"
        big.write_text("word " * 500_000)  # 2.5 MB
        with pytest.raises(Exception, match="(?i)size|large|exceed"):
            client.predict([handle_file(str(big))], "docs", api_name="/ingest")
        small = tmp_path / "notes.txt"
        small.write_text("The archive opens at nine on weekdays. " * 20)
        assert client.predict([handle_file(str(small))], "docs", api_name="/ingest")["added"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_served_retrofit_rereads_its_evidence(tmp_path):
    """`hsa serve --model smollm2-hsa` (the README's command; a chat model rereads by default): the answer
    is written from the three best evidence chunks and from the best alone, the surer kept, and every
    answer token points at exactly the chunks its answer was written from."""
    from gradio_client import Client, handle_file

    proc, url = start_server(tmp_path, model="smollm2-hsa")
    try:
        client = Client(url, verbose=False)
        pdf = make_pdf(tmp_path / "memo.pdf", memo_pages("52817", key_page=4))
        client.predict([handle_file(str(pdf))], "memo", api_name="/ingest")
        answer = client.predict("What is the pass key? Remember it.", "memo", 24, 0.0, api_name="/ask")
        assert "52817" in answer["answer"]
        assert set(answer["readings"]) == {"1", "3"}  # JSON keys: chunks read
        kept = int(max(answer["readings"], key=answer["readings"].get))
        read = [c["chunk_id"] for c in answer["chunks"][:kept]]
        assert answer["per_token"] and all(
            [c["chunk_id"] for c in t["chunks"]] == read for t in answer["per_token"]
        )
    finally:
        proc.kill()

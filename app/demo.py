"""The demo collection: the project's own documentation, laid out as a PDF, ready to ask about."""

from pathlib import Path

import pymupdf
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [
    "README.md",
    "docs/architecture.md",
    "docs/prompt-format.md",
    "docs/tokenizer.md",
    "docs/storage.md",
]
CSS = "body {font-family: sans-serif; font-size: 10pt;} pre, code {font-size: 8pt;} table {font-size: 8pt;}"


def demo_pdf(out: Path) -> Path:
    """Render the shipped Markdown docs into one A4 PDF at `out` (PyMuPDF's Story lays out the HTML)."""
    md = MarkdownIt("commonmark").enable("table")
    html = "".join(md.render((ROOT / s).read_text()) for s in SOURCES if (ROOT / s).is_file())
    story = pymupdf.Story(html=html, user_css=CSS)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = pymupdf.DocumentWriter(str(out))
    page = pymupdf.paper_rect("a4")
    more = True
    while more:
        device = writer.begin_page(page)
        more, _ = story.place(page + (50, 50, -50, -50))
        story.draw(device)
        writer.end_page()
    writer.close()
    return out

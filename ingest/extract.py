"""Extraction: files to text with provenance (pages, word boxes), one `Extracted` per document.

PDF through PyMuPDF (text per page in the order MuPDF reads it, words with their boxes, page labels);
plain text and Markdown as they are; HTML as text only; JSONL corpora one document per line. Every
problem with an input becomes an `ExtractError` whose message names the reason, never a crash.
PyMuPDF is not thread-safe: the pipeline runs `extract_file` in worker processes.
"""

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

KINDS = {
    ".pdf": "pdf",
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".jsonl": "jsonl",
}
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _too_big(size: int, max_bytes: int) -> str:
    return f"file is {_size(size)}, over the {_size(max_bytes)} size limit"


class ExtractError(Exception):
    """One input cannot be read; the message is the reason shown to the user."""


@dataclass
class Extracted:
    """One document's text and where each part of it came from."""

    path: str  # document key: absolute file path, or FILE#ID / FILE#L<line> for a JSONL record
    source: str  # the file it came from
    sha256: str  # of the bytes it came from (the file, or the JSONL line)
    kind: str
    title: str
    text: str
    pages: list[tuple[int, str, int]] = field(default_factory=list)  # (page 1-based, label, char start)
    # one row per word: char_start, char_end, page, x0, y0, x1, y1 (PDF points); None when not paged
    words: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Failure:
    """An input that could not be stored, with the reason."""

    path: str
    error: str
    source: str = ""
    sha256: str | None = None


def expand_inputs(inputs: list[str | Path]) -> tuple[list[Path], list[Failure]]:
    """Files named by paths, folders (recursively; supported types only) and globs; failures for the rest."""
    files: list[Path] = []
    failures: list[Failure] = []
    for item in map(str, inputs):
        path = Path(item).expanduser()
        if any(c in item for c in "*?[") and not path.exists():
            anchor = Path(path.anchor) if path.is_absolute() else Path()
            pattern = str(path.relative_to(anchor)) if path.is_absolute() else item
            matches = sorted(p for p in anchor.glob(pattern) if p.is_file())
            if not matches:
                failures.append(Failure(str(path), "no files match this pattern"))
            files += [m for m in matches if m.suffix.lower() in KINDS]
        elif path.is_dir():
            files += sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in KINDS
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.exists() or path.is_symlink():
            files.append(path)
        else:
            failures.append(Failure(str(path.resolve()), "no such file or directory"))
    seen: set[Path] = set()
    unique = []
    for f in files:
        f = f.resolve()
        if f not in seen:
            seen.add(f)
            unique.append(f)
    return unique, failures


def _read(path: Path, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ExtractError(_too_big(size, max_bytes))
        data = path.read_bytes()
    except OSError as e:
        raise ExtractError(e.strerror or str(e)) from None
    if not data:
        raise ExtractError("empty file")
    return data


def _decode(data: bytes, warnings: list[str]) -> str:
    """UTF-8 text; invalid bytes become U+FFFD with a warning; NUL bytes mean a binary file."""
    if b"\x00" in data[:8192]:
        raise ExtractError("binary file, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        warnings.append(f"not valid UTF-8 (byte {e.start}); decoded with replacement characters")
        return data.decode("utf-8-sig", errors="replace")


def _first_line(text: str, default: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:200]
    return default


def extract_file(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> list[Extracted]:
    """The document in one file (not JSONL: see `iter_jsonl`); raises ExtractError with the reason."""
    path = Path(path)
    kind = KINDS.get(path.suffix.lower())
    if kind is None or kind == "jsonl":
        supported = ", ".join(sorted(KINDS))
        raise ExtractError(f"unsupported file type {path.suffix or '(none)'!r} (supported: {supported})")
    data = _read(path, max_bytes)
    sha = hashlib.sha256(data).hexdigest()
    if kind == "pdf":
        doc = _pdf(data, path.stem)
    else:
        warnings: list[str] = []
        text = _decode(data, warnings)
        title = path.stem
        if kind == "html":
            parser = _HTMLText()
            parser.feed(text)
            parser.close()
            text, title = parser.text(), parser.title.strip() or path.stem
        elif kind == "markdown":
            title = next((ln[2:].strip() for ln in text.splitlines() if ln.startswith("# ")), path.stem)
        if not text.strip():
            raise ExtractError("no text")
        doc = Extracted("", "", "", kind, title, text, warnings=warnings)
    doc.path = doc.source = str(path)
    doc.sha256 = sha
    return [doc]


def _pdf(data: bytes, default_title: str) -> Extracted:
    import pymupdf  # here, so processes that never read a PDF never load MuPDF

    if b"%PDF-" not in data[:1024]:
        raise ExtractError("not a PDF file (no %PDF- header)")
    pymupdf.TOOLS.mupdf_display_errors(False)
    pymupdf.TOOLS.mupdf_display_warnings(False)
    pymupdf.TOOLS.reset_mupdf_warnings()
    try:
        doc = pymupdf.open(stream=data, filetype="pdf")
    except Exception as e:  # MuPDF raises FileDataError or RuntimeError with its own message
        raise ExtractError(f"corrupt or truncated PDF: {e}") from None
    with doc:
        if doc.needs_pass:
            raise ExtractError("encrypted PDF: a password is needed to read it")
        if doc.is_repaired:
            first = next((w for w in pymupdf.TOOLS.mupdf_warnings().splitlines() if w.strip()), "broken xref")
            raise ExtractError(f"corrupt or truncated PDF ({first})")
        parts: list[str] = []
        pages: list[tuple[int, str, int]] = []
        boxes: list[tuple] = []
        pos = 0
        for page in doc:
            if parts:
                parts.append("\n\n")
                pos += 2
            pages.append((page.number + 1, page.get_label(), pos))
            last = None
            for x0, y0, x1, y1, word, block, line, _ in page.get_text("words", textpage=page.get_textpage()):
                if last is not None:
                    sep = " " if (block, line) == last else "\n"
                    parts.append(sep)
                    pos += 1
                last = (block, line)
                parts.append(word)
                boxes.append((pos, pos + len(word), page.number + 1, x0, y0, x1, y1))
                pos += len(word)
        if not boxes:
            raise ExtractError("no extractable text; OCR is not supported")
        text = "".join(parts)
        title = (doc.metadata or {}).get("title") or _first_line(text, default_title)
        return Extracted("", "", "", "pdf", title, text, pages=pages, words=np.array(boxes, dtype=np.float64))


class _HTMLText(HTMLParser):
    """Visible text of an HTML page: scripts and styles dropped, block elements on their own lines."""

    BLOCKS = {
        "p",
        "div",
        "br",
        "li",
        "tr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "section",
        "article",
        "pre",
        "table",
    }
    HIDDEN = {"script", "style", "noscript", "template", "head"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self.hidden = 0
        self.in_title = False

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in self.HIDDEN:
            self.hidden += 1
        if tag == "title":
            self.in_title = True
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN and self.hidden:
            self.hidden -= 1
        if tag == "title":
            self.in_title = False
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title += data
        elif not self.hidden:
            self.parts.append(data)

    def text(self) -> str:
        lines = (" ".join(line.split()) for line in "".join(self.parts).splitlines())
        out, blank = [], False
        for line in lines:
            if line:
                out.append(line)
                blank = False
            elif not blank and out:
                out.append("")
                blank = True
        return "\n".join(out).strip()


def iter_jsonl(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[Extracted | Failure]:
    """One document per line (`text`; optional `id`, `title`, `url`; other fields kept as metadata).

    Streams the file, so a corpus never has to fit in memory; a bad line is a Failure naming its line.
    """
    path = Path(path)
    source = str(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        yield Failure(source, e.strerror or str(e))
        return
    if size > max_bytes:
        yield Failure(source, _too_big(size, max_bytes))
        return
    if size == 0:
        yield Failure(source, "empty file")
        return
    with open(path, "rb") as f:
        if b"\x00" in f.read(8192):
            yield Failure(source, "binary file, not text")
            return
        f.seek(0)
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            key = f"{source}#L{n}"
            warnings: list[str] = []
            try:
                record = json.loads(_decode(raw, warnings))
            except json.JSONDecodeError as e:
                yield Failure(key, f"line {n}: not JSON ({e.msg})", source)
                continue
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                yield Failure(key, f'line {n}: no "text" string field', source)
                continue
            if not record["text"].strip():
                yield Failure(key, f"line {n}: empty text", source)
                continue
            text = record.pop("text")
            rid = record.pop("id", None)
            title = record.pop("title", None)
            if rid is not None:
                key = f"{source}#{rid}"
            yield Extracted(
                path=key,
                source=source,
                sha256=hashlib.sha256(raw.strip()).hexdigest(),
                kind="jsonl",
                title=str(title) if title else _first_line(text, f"{path.stem} line {n}"),
                text=text,
                metadata={"line": n, **({"id": rid} if rid is not None else {}), **record},
                warnings=[f"line {n}: {w}" for w in warnings],
            )

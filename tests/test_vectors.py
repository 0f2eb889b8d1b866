"""Vectors I/O: word2vec text/binary round trips with gensim, restricted loading, lookup, bad files, pickles."""
import json
import pickle

import numpy as np
import pytest

from mmlightning.errors import UserError
from mmlightning.vectors import KeyedVectors, load_vectors
from cli_helpers import PAIRS, WORDS, assert_user_error, binary_vectors, evaluate_args, random_rows, run, vectors_text


class OpensFile:
    """Unpickling this creates `path`: the marker that a file was unpickled (it must never exist)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def kv():
    rng = np.random.default_rng(0)
    return KeyedVectors(["cat", "Dog", "naïve", "money"], rng.normal(size=(4, 5)).astype(np.float32))


@pytest.mark.parametrize("binary", [False, True])
def test_round_trip_and_gensim_reads_ours(kv, tmp_path, binary):
    from gensim.models import KeyedVectors as GKV

    path = tmp_path / "v.bin"
    kv.save_word2vec(path, binary=binary)
    back = load_vectors(path)
    assert back.index_to_key == kv.index_to_key
    np.testing.assert_allclose(back.vectors, kv.vectors, rtol=1e-6)
    g = GKV.load_word2vec_format(str(path), binary=binary)
    assert list(g.index_to_key) == kv.index_to_key
    np.testing.assert_allclose(g.vectors, kv.vectors, rtol=1e-6)


def test_we_read_gensim_text_and_native(kv, tmp_path):
    from gensim.models import KeyedVectors as GKV

    g = GKV(vector_size=5)
    g.add_vectors(kv.index_to_key, kv.vectors)
    g.save_word2vec_format(str(tmp_path / "g.txt"))
    g.save(str(tmp_path / "g.kv"))
    for name in ("g.txt", "g.kv"):
        back = load_vectors(tmp_path / name, unsafe_gensim_pickle=name.endswith(".kv"))
        assert back.index_to_key == kv.index_to_key
        np.testing.assert_allclose(back.vectors, kv.vectors, rtol=1e-6)
    assert load_vectors(tmp_path / "g.kv", restrict_to=["cat"], unsafe_gensim_pickle=True).index_to_key == ["cat"]
    with pytest.raises(UserError, match="pickle.*--unsafe_gensim_pickle"):
        load_vectors(tmp_path / "g.kv")                               # gensim's native format: only when asked


@pytest.mark.parametrize("name", ["evil.txt", "evil.kv", "evil.npy"])
def test_a_pickle_is_refused_and_never_unpickled(tmp_path, name):
    marker = tmp_path / "unpickled"
    path = tmp_path / name
    path.write_bytes(pickle.dumps(OpensFile(marker), protocol=4))    # first byte 0x80, whatever the name
    with pytest.raises(UserError) as e:
        load_vectors(path, restrict_to={"cat"})
    assert not marker.exists()
    msg = str(e.value)
    assert msg.startswith(str(path)) and "pickle" in msg and "--unsafe_gensim_pickle" in msg and "\n" not in msg


def save_npy_vectors(path, words, matrix):
    np.save(path, matrix)
    path.with_suffix(".vocab.txt").write_text("".join(w + "\n" for w in words))


def test_npy_matrix_with_a_vocab_file_beside_it(kv, tmp_path):
    save_npy_vectors(tmp_path / "v.npy", kv.index_to_key, kv.vectors)
    back = load_vectors(tmp_path / "v.npy")
    assert back.index_to_key == kv.index_to_key
    np.testing.assert_array_equal(back.vectors, kv.vectors)
    small = load_vectors(tmp_path / "v.npy", restrict_to={"Dog", "NAÏVE"})
    assert small.index_to_key == ["Dog", "naïve"]
    np.testing.assert_array_equal(small["Dog"], kv.vectors[1])
    save_npy_vectors(tmp_path / "d.npy", kv.index_to_key, kv.vectors.astype(np.float64))  # any float dtype
    assert load_vectors(tmp_path / "d.npy").vectors.dtype == np.float32


@pytest.mark.parametrize("case, what", [
    ("no_vocab", "no word list"),
    ("vocab_too_short", "4 rows but"),
    ("one_dimensional", "a 2-D"),
    ("integers", "float"),
    ("nan", "NaN"),
    ("empty_word", "line 2"),
    ("object_array", "pickle"),
])
def test_bad_npy_vectors(kv, tmp_path, case, what):
    marker = tmp_path / "unpickled"
    path = tmp_path / "v.npy"
    words, m = list(kv.index_to_key), kv.vectors.copy()
    if case == "vocab_too_short":
        words = words[:3]
    elif case == "one_dimensional":
        m = m[0]
    elif case == "integers":
        m = m.astype(np.int64)
    elif case == "nan":
        m[2, 1] = np.nan
    elif case == "empty_word":
        words[1] = ""
    elif case == "object_array":
        m = np.array([OpensFile(marker)] * 4, dtype=object)
    save_npy_vectors(path, words, m)
    if case == "no_vocab":
        (tmp_path / "v.vocab.txt").unlink()
    with pytest.raises(UserError) as e:
        load_vectors(path)
    assert not marker.exists()
    assert str(e.value).startswith(str(tmp_path)) and what in str(e.value) and "\n" not in str(e.value)


def test_restricted_loading_and_lookup(kv, tmp_path):
    kv.save_word2vec(tmp_path / "v.txt")
    small = load_vectors(tmp_path / "v.txt", restrict_to={"DOG", "Money", "absent"})
    assert small.index_to_key == ["money"]            # restrict_to lower-cases the wanted words only
    small = load_vectors(tmp_path / "v.txt", restrict_to={"Dog", "cat"})
    assert small.index_to_key == ["cat", "Dog"]
    assert kv.lookup("Dog") == 1 and kv.lookup("CAT") == 0 and kv.lookup("DOG") is None
    assert "Money" in kv and "horse" not in kv
    assert kv.subset(["Cat", "horse"]).index_to_key == ["Cat"]
    with pytest.raises(KeyError):
        kv["horse"]


@pytest.mark.parametrize("text, where, what", [
    ("3 2\na 1 2\nb 1 2\n", ":", "header says 3 words"),
    ("2 3\na 1 2 3\nb 1 2\n", ":3", "2 values, header says 3"),
    ("2 2\na 1 2\nb 1 q\n", ":3", "non-numeric"),
    ("two 2\na 1 2\n", ":1", "header"),
    ("1 2\na nan 2\n", ":", "NaN"),
])
def test_bad_files_name_file_and_line(tmp_path, text, where, what):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(UserError) as e:
        load_vectors(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}{where}") and what in msg and "\n" not in msg


def test_missing_truncated_and_unwritable(tmp_path, kv):
    with pytest.raises(UserError, match="not found"):
        load_vectors(tmp_path / "absent.txt")
    kv.save_word2vec(tmp_path / "v.bin", binary=True)
    data = (tmp_path / "v.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[:-30])
    with pytest.raises(UserError, match="truncated|ends after"):
        load_vectors(tmp_path / "cut.bin")
    with pytest.raises(UserError, match="whitespace"):
        KeyedVectors(["a b"], np.zeros((1, 2))).save_word2vec(tmp_path / "x.txt")
    assert not (tmp_path / "x.txt").exists()


def test_text_or_binary_is_told_from_the_first_row(tmp_path):
    """A non-UTF-8 word does not make a text file binary; gensim's binary (no newlines) is still binary."""
    from gensim.models import KeyedVectors as GKV

    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(3, 300)).astype(np.float32)
    text = b"3 300\n" + b"".join(w + b" " + " ".join(f"{x:.6f}" for x in v).encode() + b"\n"
                                 for w, v in zip([b"caf\xe9", b"cat", b"dog"], vecs))
    (tmp_path / "t.txt").write_bytes(text)
    kv = load_vectors(tmp_path / "t.txt")
    assert kv.index_to_key == ["caf\ufffd", "cat", "dog"]
    np.testing.assert_allclose(kv.vectors, vecs, atol=1e-6)
    g = GKV(vector_size=300)
    g.add_vectors(["naïve", "cat", "dog"], vecs)
    g.save_word2vec_format(str(tmp_path / "g.bin"), binary=True)
    assert b"\n" not in (tmp_path / "g.bin").read_bytes()[len(b"3 300\n"):20]
    kv = load_vectors(tmp_path / "g.bin", restrict_to={"dog", "naïve"})
    assert kv.index_to_key == ["naïve", "dog"]
    np.testing.assert_array_equal(kv["dog"], vecs[2])


def test_binary_trailing_whitespace_is_fine_trailing_data_is_not(tmp_path, kv):
    kv.save_word2vec(tmp_path / "v.bin", binary=True)
    data = (tmp_path / "v.bin").read_bytes()
    (tmp_path / "ws.bin").write_bytes(data + b"\n\n  \n")
    assert load_vectors(tmp_path / "ws.bin").index_to_key == kv.index_to_key
    (tmp_path / "under.bin").write_bytes(b"2" + data[1:])           # header "4 5" -> "2 5"
    with pytest.raises(UserError, match="data continues after the 2 words the header announces"):
        load_vectors(tmp_path / "under.bin")
    with pytest.raises(UserError, match="data continues"):
        load_vectors(tmp_path / "under.bin", restrict_to={"cat"})     # also when only some words are wanted


@pytest.mark.parametrize("data", [b"0 5\n", b"0 5\n\n", b"0 5\nextra\n"])
def test_a_file_of_zero_words_is_an_error(tmp_path, data):
    (tmp_path / "z.txt").write_bytes(data)
    with pytest.raises(UserError, match="no word vectors|header says 0 words"):
        load_vectors(tmp_path / "z.txt")


def test_empty_gensim_native_file_is_an_error(tmp_path):
    from gensim.models import KeyedVectors as GKV

    GKV(vector_size=5).save(str(tmp_path / "e.kv"))
    with pytest.raises(UserError, match="no word vectors"):
        load_vectors(tmp_path / "e.kv", unsafe_gensim_pickle=True)


def test_duplicates_keep_the_first_copy_and_are_logged(tmp_path, caplog):
    import logging

    (tmp_path / "d.txt").write_text("4 2\ncat 1 2\ndog 3 4\ncat 5 6\nemu 7 8\n")
    logger = logging.getLogger("mmlightning.vectors")
    logger.addHandler(caplog.handler)
    try:
        kv = load_vectors(tmp_path / "d.txt", restrict_to={"cat"})
    finally:
        logger.removeHandler(caplog.handler)
    assert kv.index_to_key == ["cat"] and kv["cat"].tolist() == [1.0, 2.0]
    assert "1 duplicate word(s) ignored, first copy kept (first: 'cat' at line 4)" in caplog.text


# ---------------------------------------------------------------- bad vectors files through `evaluate` (issue 11)
# 4. a word2vec *text* file with a non-UTF-8 byte is text, not binary; a file of 0 words is an error.
def test_item04_text_vectors_with_a_latin1_word_are_read_as_text(tmp_path, bench, capsys, logs):
    ling = tmp_path / "ling.txt"
    rows = [(b"caf\xe9", [0.1, 0.2, 0.3, 0.4])] + random_rows(WORDS)  # latin-1 'café' on the first row
    ling.write_bytes(vectors_text(rows))
    code, out, err = run(evaluate_args(ling, bench, tmp_path), capsys)
    assert code == 0, err
    cell = json.loads((tmp_path / "rep" / "evaluation.json").read_text())["table1"]["bench"]["full"]["linguistic"]
    assert cell["pairs_used"] == len(PAIRS) and cell["rho"] is not None
    assert len(load_vectors(ling)) == 6
    assert any("not valid UTF-8" in r.getMessage() for r in logs)


@pytest.mark.parametrize("content, needle", [(b"0 4\n", "holds no word vectors"),
                                             (b"0 4\n\n\n", "holds no word vectors"),
                                             (b"3 4\n", "header says 3 words but the file has 0")])
def test_item04_a_vectors_file_of_zero_words_is_an_error(tmp_path, bench, capsys, content, needle):
    ling = tmp_path / "empty.txt"
    ling.write_bytes(content)
    code, out, err = run(evaluate_args(ling, bench, tmp_path), capsys)
    assert_user_error(code, err, "evaluate", str(ling), needle)  # not "no word in common": the file is empty
    assert not (tmp_path / "rep" / "evaluation.json").exists()


# 7. a binary header that under-counts words is refused; duplicate and undecodable words are counted and warned.
def test_item07_binary_header_that_undercounts_words_is_refused(tmp_path, bench, capsys):
    ling = tmp_path / "ling.bin"
    ling.write_bytes(binary_vectors([w.encode() for w in WORDS], count=2))
    code, _, err = run(evaluate_args(ling, bench, tmp_path), capsys)
    assert_user_error(code, err, "evaluate", str(ling), "2 words the header announces")


def test_item07_binary_with_a_latin1_byte_in_the_first_row_is_still_binary(tmp_path, bench, capsys):
    ling = tmp_path / "ling.bin"
    ling.write_bytes(binary_vectors([b"caf\xe9"] + [w.encode() for w in WORDS]))
    code, _, err = run(evaluate_args(ling, bench, tmp_path), capsys)
    assert code == 0, err
    cell = json.loads((tmp_path / "rep" / "evaluation.json").read_text())["table1"]["bench"]["full"]["linguistic"]
    assert cell["pairs_used"] == len(PAIRS)


@pytest.mark.parametrize("binary", [False, True])
def test_item07_duplicate_and_undecodable_words_are_counted_and_warned(tmp_path, logs, binary):
    words = [b"cat", b"dog", b"cat", b"\xff\xfe", b"dog", b"car"]
    path = tmp_path / "v.bin"
    if binary:
        path.write_bytes(binary_vectors(words))
    else:
        path.write_bytes(vectors_text([(w, [float(i), 1.0, 2.0, 3.0]) for i, w in enumerate(words)]))
    kv = load_vectors(path)
    assert kv.index_to_key == ["cat", "dog", "\ufffd\ufffd", "car"]           # first copy kept, as gensim
    if not binary:
        assert kv["cat"][0] == 0.0 and kv["dog"][0] == 1.0
    messages = [r.getMessage() for r in logs]
    assert any("2 duplicate word(s)" in m and "'cat'" in m for m in messages), messages
    assert any("1 word(s) are not valid UTF-8" in m for m in messages), messages

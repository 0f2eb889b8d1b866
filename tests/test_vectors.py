"""Vectors I/O: word2vec text/binary round trips with gensim, restricted loading, lookup, bad files."""
import numpy as np
import pytest

from mmlightning.errors import UserError
from mmlightning.vectors import KeyedVectors, load_vectors


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
        back = load_vectors(tmp_path / name)
        assert back.index_to_key == kv.index_to_key
        np.testing.assert_allclose(back.vectors, kv.vectors, rtol=1e-6)
    assert load_vectors(tmp_path / "g.kv", restrict_to=["cat"]).index_to_key == ["cat"]


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

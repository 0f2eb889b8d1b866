"""Shipped benchmarks (sizes, duplicates kept) and user benchmark files (formats, bad lines)."""
import pytest

from mmlightning.datasets import DATA_DIR, SHIPPED, benchmark_vocabulary, load_benchmark
from mmlightning.errors import UserError


@pytest.mark.parametrize("name, pairs", [("ws353", 353), ("ws353_similarity", 203), ("ws353_relatedness", 252),
                                         ("men", 3000), ("simlex999", 999), ("rg65", 65),
                                         ("mturk287", 287), ("rw", 2034)])
def test_shipped_sizes(name, pairs):
    b = load_benchmark(name)
    assert len(b) == pairs and b.name == name


def test_men_vocabulary_and_duplicates_kept():
    assert len(load_benchmark("men").words()) == 751
    ws = load_benchmark("ws353")
    assert sum(1 for a, b, _ in ws.pairs if {a, b} == {"money", "cash"}) == 2
    assert ws.pairs[0] == ("love", "sex", 6.77)
    assert benchmark_vocabulary(["ws353", "men"]) == ws.words() | load_benchmark("men").words()


def test_new_benchmarks_first_pairs_and_paper_default():
    from mmlightning.datasets import PAPER_BENCHMARKS
    from mmlightning.evaluation.systems import DEFAULT_BENCHMARKS

    assert load_benchmark("rg65").pairs[0] == ("gem", "jewel", 3.94)
    assert load_benchmark("mturk287").pairs[0] == ("episcopal", "russia", 2.75)   # CRLF file
    assert load_benchmark("rw").pairs[0] == ("squishing", "squirt", 5.88)
    assert DEFAULT_BENCHMARKS == list(PAPER_BENCHMARKS) and "rw" not in DEFAULT_BENCHMARKS


def test_citations_shipped():
    text = (DATA_DIR / "CITATION.md").read_text()
    for f in SHIPPED.values():
        assert f in text
    for author in ("Rubenstein", "Radinsky", "Luong"):
        assert author in text


def test_user_file_tab_or_space(tmp_path):
    p = tmp_path / "mine.txt"
    p.write_text("# comment\ncat\tdog\t3.5\n\nice cream  2\nNew York\tcity\t7\n")
    b = load_benchmark(p)
    assert b.name == "mine"
    assert b.pairs == (("cat", "dog", 3.5), ("ice", "cream", 2.0), ("New York", "city", 7.0))


@pytest.mark.parametrize("text, line", [("a b 1\na b\n", 2), ("a b 1\na b c d\n", 2), ("a b x\n", 1),
                                        ("a b inf\n", 1)])
def test_bad_lines(tmp_path, text, line):
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(UserError, match=f"^{p}:{line}: "):
        load_benchmark(p)


def test_missing_empty_and_binary(tmp_path):
    with pytest.raises(UserError, match="not a shipped benchmark"):
        load_benchmark(tmp_path / "absent.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(UserError, match="no pairs"):
        load_benchmark(tmp_path / "empty.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00a b 1\n")
    with pytest.raises(UserError, match="UTF-8"):
        load_benchmark(tmp_path / "bin.txt")

"""`evaluate` with bad input (issue 11): exit 2 with one error line naming the file (and line) and the problem,
never a traceback or a silent wrong number; an output folder under a file, on a read-only or full disk; and the
genuine bugs that keep their traceback."""
from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path

import pytest

from cli_helpers import (WORDS, assert_parser_error, assert_user_error, binary_vectors, evaluate_args, random_rows,
                         run, run_proc, vectors_text)
from mmlightning import cli


# 10. an output folder under a regular file, or on a read-only / full disk: one line, exit 2.
def test_item10_evaluate_out_under_a_file(tmp_path, good_vectors, bench, capsys, monkeypatch):
    import mmlightning.evaluation.systems as systems

    def too_late(*a, **k):
        raise AssertionError("the scores were computed before the output folder was checked")
    monkeypatch.setattr(systems, "evaluate_systems", too_late)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    code, _, err = run(evaluate_args(good_vectors, bench, tmp_path)[:-1] + [blocker / "rep"], capsys)
    assert_user_error(code, err, "evaluate", str(blocker / "rep"), f"{blocker} is a file")


def test_item10_evaluate_out_is_an_existing_file(tmp_path, good_vectors, bench, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    code, _, err = run(evaluate_args(good_vectors, bench, tmp_path)[:-1] + [blocker], capsys)
    assert_user_error(code, err, "evaluate", str(blocker), "not a folder")
    assert blocker.read_text() == "x"


def test_item10_evaluate_out_under_a_file_real_process(tmp_path, good_vectors, bench):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    p = run_proc(evaluate_args(good_vectors, bench, tmp_path)[:-1] + [blocker / "rep"], tmp_path)
    assert_user_error(p.returncode, p.stderr, "evaluate", str(blocker / "rep"))
    assert p.stderr.strip().splitlines()[-1].startswith("mmlightning evaluate: error:")


def test_item10_evaluate_out_on_a_read_only_file_system(tmp_path, good_vectors, bench, capsys, monkeypatch):
    ro = tmp_path / "ro"
    real_mkdir = Path.mkdir

    def mkdir(self, *a, **k):  # a read-only mount, as root cannot get one from chmod
        if str(self).startswith(str(ro)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *a, **k)
    monkeypatch.setattr(Path, "mkdir", mkdir)
    code, _, err = run(evaluate_args(good_vectors, bench, tmp_path)[:-1] + [ro / "rep"], capsys)
    assert_user_error(code, err, "evaluate", str(ro / "rep"), "read-only file system")


def test_item10_disk_full_while_writing_reports(tmp_path, good_vectors, bench, capsys, monkeypatch):
    import mmlightning.evaluation.report as report

    def full(result, out_dir):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(out_dir) / "evaluation.json"))
    monkeypatch.setattr(report, "write_reports", full)
    code, _, err = run(evaluate_args(good_vectors, bench, tmp_path), capsys)
    assert_user_error(code, err, "evaluate", "evaluation.json", "no space left")


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, "No space left on device"), RuntimeError("a bug"),
                                 FileNotFoundError(errno.ENOENT, "No such file", "/internal/file")])
def test_item10_genuine_bugs_keep_their_traceback(tmp_path, good_vectors, bench, capsys, monkeypatch, exc):
    """Only an OSError about a named path of the user's is turned into one line; anything else is a bug."""
    import mmlightning.evaluation.report as report

    def broken(result, out_dir):
        raise exc
    monkeypatch.setattr(report, "write_reports", broken)
    with pytest.raises(type(exc)):
        cli.main([str(a) for a in evaluate_args(good_vectors, bench, tmp_path)])


# --- evaluate: benchmarks, vectors and settings. (name, files {name: bytes}, args, needles)
GOOD = vectors_text(random_rows(WORDS))
EVALUATE_CASES = [
    ("missing_linguistic_option", {}, [], ["--linguistic"]),
    ("missing_vectors_file", {}, ["--linguistic", "{t}/absent.txt"], ["absent.txt", "not found"]),
    ("missing_benchmark_file", {"ling.txt": GOOD}, ["--linguistic", "{t}/ling.txt", "--benchmarks", "[{t}/no.txt]"],
     ["no.txt", "no such benchmark"]),
    ("benchmark_bad_line", {"ling.txt": GOOD, "b.txt": b"cat dog 5\ncat dog\n"},
     ["--linguistic", "{t}/ling.txt", "--benchmarks", "[{t}/b.txt]"], ["b.txt:2:", "word1 word2 score"]),
    ("benchmark_score_not_a_number", {"ling.txt": GOOD, "b.txt": b"cat dog high\n"},
     ["--linguistic", "{t}/ling.txt", "--benchmarks", "[{t}/b.txt]"], ["b.txt:1:", "not a number"]),
    ("benchmark_not_utf8", {"ling.txt": GOOD, "b.txt": b"caf\xe9 dog 5\n"},
     ["--linguistic", "{t}/ling.txt", "--benchmarks", "[{t}/b.txt]"], ["b.txt", "not UTF-8"]),
    ("vectors_bad_row", {"ling.txt": b"2 2\ncat 1 2\ndog 1 x\n"}, ["--linguistic", "{t}/ling.txt"],
     ["ling.txt:3:", "non-numeric"]),
    ("vectors_wrong_dimension_in_a_row", {"ling.txt": b"2 3\ncat 1 2 3\ndog 1 2\n"}, ["--linguistic", "{t}/ling.txt"],
     ["ling.txt:3:", "2 values, header says 3"]),
    ("vectors_header_not_numbers", {"ling.txt": b"cat 1 2\ndog 1 2\n"}, ["--linguistic", "{t}/ling.txt"],
     ["ling.txt:1:", "header"]),
    ("vectors_header_overcounts", {"ling.txt": b"5 2\ncat 1 2\ndog 1 2\n"}, ["--linguistic", "{t}/ling.txt"],
     ["header says 5 words but the file has 2"]),
    ("vectors_nan", {"ling.txt": b"2 2\ncat nan 2\ndog 1 2\n"}, ["--linguistic", "{t}/ling.txt"], ["'cat'", "NaN"]),
    ("vectors_binary_truncated", {"ling.bin": binary_vectors([b"cat", b"dog", b"car"])[:-9]},
     ["--linguistic", "{t}/ling.bin"], ["ling.bin", "truncated"]),
    ("vectors_pickle_refused_without_opt_in", {"ling.txt": pickle.dumps({"cat": [1.0]}, protocol=2)},
     ["--linguistic", "{t}/ling.txt"], ["ling.txt", "pickle", "--unsafe_gensim_pickle"]),
    ("vectors_pickle_not_keyedvectors", {"ling.kv": pickle.dumps({"cat": [1.0]}, protocol=2)},
     ["--linguistic", "{t}/ling.kv", "--unsafe_gensim_pickle", "true"], ["ling.kv", "not a readable gensim KeyedVectors file"]),
    ("vectors_share_no_word_with_benchmark", {"ling.txt": vectors_text(random_rows(["emu", "yak"]))},
     ["--linguistic", "{t}/ling.txt"], ["ling.txt", "no word in common"]),
    ("bad_alpha", {"ling.txt": GOOD}, ["--linguistic", "{t}/ling.txt", "--alpha", "1.5"], ["alpha 1.5", "[0, 1]"]),
    ("bad_visual_name", {"ling.txt": GOOD}, ["--linguistic", "{t}/ling.txt", "--visual", '{{"tux/": "{t}/ling.txt"}}'],
     ["'tux/'", "<source>/<method>"]),
    ("missing_visual_file", {"ling.txt": GOOD}, ["--linguistic", "{t}/ling.txt", "--visual.tux/cnn-mean", "{t}/v.txt"],
     ["v.txt", "not found"]),
    ("visual_dimensions_disagree", {"ling.txt": GOOD, "a.txt": GOOD, "b.txt": vectors_text(random_rows(WORDS, d=6))},
     ["--linguistic", "{t}/ling.txt", "--visual", '{{"x/cnn-mean": "{t}/a.txt", "y/cnn-mean": "{t}/b.txt"}}'],
     ["b.txt:1:", "dimension 6", "has 4"]),
    ("unknown_table2_system", {"ling.txt": GOOD}, ["--linguistic", "{t}/ling.txt", "--table2_system", "nope"],
     ["table2_system 'nope'"]),
]


@pytest.mark.parametrize("name, files, args, needles", EVALUATE_CASES, ids=[c[0] for c in EVALUATE_CASES])
def test_evaluate_bad_input(tmp_path, bench, capsys, name, files, args, needles):
    for fname, data in files.items():
        (tmp_path / fname).write_bytes(data)
    args = [a.format(t=tmp_path) for a in args]
    if "--benchmarks" not in args:
        args += ["--benchmarks", f"[{bench}]"]
    code, _, err = run(["evaluate", *args, "--n_boot", "0", "--out", tmp_path / "rep"], capsys)
    assert_user_error(code, err, "evaluate", *needles)
    assert not (tmp_path / "rep" / "evaluation.json").exists()


def test_evaluate_bad_oov_choice(good_vectors, bench, tmp_path, capsys):
    code, _, err = run([*evaluate_args(good_vectors, bench, tmp_path), "--oov", "drop"], capsys)
    assert_parser_error(code, err, "oov")

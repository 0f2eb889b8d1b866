"""`shard --words labelled`: every word the source labels plus the benchmarks' words, same N, seed and coverage."""
import json
import tarfile

from cli_helpers import assert_user_error, run
from test_shard import esp  # noqa: F401  (fixture: 6 ESP images tagged dog, grass, cat, sky; bench.txt)


def images_by_word(out, manifest) -> dict[str, list[str]]:
    by_word: dict[str, list[str]] = {}
    for s in manifest["shards"]:
        with tarfile.open(out / s["name"]) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    meta = json.loads(tar.extractfile(m).read())
                    for w in meta["words"]:
                        by_word.setdefault(w, []).append(meta["path"])
    return {w: sorted(p) for w, p in sorted(by_word.items())}


def test_shard_words_labelled_writes_every_labelled_word(esp, tmp_path, capsys):
    root, _, _ = esp
    bench = tmp_path / "small.txt"
    bench.write_text("dog emu 5\n")  # the benchmark names only dog (labelled) and emu (no image)
    out = tmp_path / "labelled"
    code, stdout, err = run(["shard", "--source", "esp", "--root", root, "--output_dir", out, "--words", "labelled",
                             "--benchmarks", f"[{bench}]", "--n_per_word", 1, "--seed", 3, "--max_side", 32], capsys)
    assert code == 0, err[-2000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["words_requested"] == 5 and m["notes"]["labelled_words"] == 4      # cat, dog, grass, sky + emu
    assert sorted(m["word_counts"]) == ["cat", "dog", "grass", "sky"]
    assert set(m["word_counts"].values()) == {1}                              # N still applies
    assert list(m["missing_words"]) == ["emu"]
    assert m["coverage"]["small"] == {"words": 2, "words_with_images": 1, "pairs": 1, "pairs_with_images": 0}
    assert "shard: 5 words (4 labelled by the source + the benchmarks')" in stdout
    assert "coverage small: 1/2 words, 0/1 pairs with images" in stdout


def test_a_words_images_do_not_depend_on_the_other_words(esp, tmp_path, capsys):
    root, _, _ = esp
    bench, words = tmp_path / "pair.txt", tmp_path / "two.txt"
    bench.write_text("dog cat 5\n")
    words.write_text("dog\ncat\n")
    common = ["--source", "esp", "--root", root, "--benchmarks", f"[{bench}]", "--n_per_word", 2, "--seed", 5,
              "--max_side", 32]
    assert run(["shard", *common, "--output_dir", tmp_path / "a", "--words", words], capsys)[0] == 0
    assert run(["shard", *common, "--output_dir", tmp_path / "b", "--words", "labelled"], capsys)[0] == 0
    a, b = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in "ab")
    assert a["coverage"] == b["coverage"] and a["fingerprint"] != b["fingerprint"]
    by_a, by_b = images_by_word(tmp_path / "a", a), images_by_word(tmp_path / "b", b)
    assert sorted(by_a) == ["cat", "dog"] and sorted(by_b) == ["cat", "dog", "grass", "sky"]
    assert by_a == {w: by_b[w] for w in by_a}


def test_a_source_that_cannot_list_its_words_is_one_line(esp, tmp_path, capsys, monkeypatch):
    from mmlightning.images import write_shards

    class Unlisted:
        name = "esp"

    root, bench, _ = esp
    monkeypatch.setattr(write_shards, "open_source", lambda *a, **k: Unlisted())
    code, _, err = run(["shard", "--source", "esp", "--root", root, "--output_dir", tmp_path / "o",
                        "--words", "labelled", "--benchmarks", f"[{bench}]"], capsys)
    assert_user_error(code, err, "shard", "source 'esp' cannot list the words it labels")
    assert not (tmp_path / "o" / "manifest.json").exists()

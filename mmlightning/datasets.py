"""Evaluation sets: word-relatedness benchmarks and concept-categorisation sets, shipped ones by name.

    bench = load_benchmark("men")             # or "ws353", "ws353_similarity", "ws353_relatedness",
    bench.pairs[0]  # ('sun', 'sunlight', 50.0)  "simlex999", "rg65", "mturk287", "rw" (Stanford Rare
                    # Words), "simverb3500", "mturk771", "mc30", "yp130", "semeval2017", or a path to
                    # "word1 word2 score" lines (or a .csv with columns word1, word2, similarity)
    cats = load_categories("ap")              # or "battig", "bless", "esslli2008_verbs", or a .csv
    cats.words[0], cats.categories[0]         # ('acne', 'illness')  with columns category, word
    names = expand_names(["all"])             # every shipped set, similarity first
    sets = [load_set(n) for n in names]       # Benchmark or CategorySet, by name or file
    vocab = benchmark_vocabulary(["men", "ws353", "ap"])

Every pair is kept in file order, duplicates included (money/cash is in WS353 twice). A categorisation
set keeps each word once with its category; the blank rows that close each category in the shipped CSVs
are skipped, and a word filed under two categories (463 in Battig) has no single gold class: it is left
out and listed in `ambiguous`.
Data files and their citations: mmlightning/data/benchmarks/CITATION.md. (A root module, not part of
evaluation/: `shard` reads the benchmarks' words too, and images/ lies below evaluation/ in the data order.
The speed scripts are the top-level `benchmarks/` folder.)
"""
from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Union

from mmlightning.errors import UserError

DATA_DIR = Path(__file__).parent / "data" / "benchmarks"
SHIPPED = {
    "ws353": "ws353.tsv",
    "ws353_similarity": "ws353_similarity.txt",
    "ws353_relatedness": "ws353_relatedness.txt",
    "men": "men.txt",
    "simlex999": "simlex999.txt",
    "rg65": "rg65.txt",
    "mturk287": "mturk287.txt",
    "rw": "rw.txt",
    "simverb3500": "simverb3500.csv",
    "mturk771": "mturk771.csv",
    "mc30": "mc30.csv",
    "yp130": "yp130.csv",
    "semeval2017": "semeval2017_en.csv",
}
CATEGORISATION = {
    "ap": "ap.csv",
    "battig": "battig.csv",
    "bless": "bless.csv",
    "esslli2008_verbs": "esslli2008_verbs.csv",
}
ALL = "all"  # every shipped set: the similarity sets, then the categorisation sets
# The paper's benchmarks and their splits: what `evaluate` scores when none are named (the later
# additions are scored when named, or with "all", and rg65, mturk287, rw by the protocol's test-only list).
PAPER_BENCHMARKS = ("ws353", "ws353_similarity", "ws353_relatedness", "men", "simlex999")


@dataclass(frozen=True)
class Benchmark:
    """A named list of (word1, word2, gold score) pairs."""

    name: str
    pairs: tuple[tuple[str, str, float], ...]

    def words(self) -> set[str]:
        return {w for a, b, _ in self.pairs for w in (a, b)}

    def __len__(self) -> int:
        return len(self.pairs)


@dataclass(frozen=True)
class CategorySet:
    """A named list of words, each with one gold category (concept categorisation)."""

    name: str
    items: tuple[tuple[str, str], ...]   # (word, category), file order, each word once
    ambiguous: tuple[str, ...] = ()      # words filed under several categories: left out

    @property
    def n_categories(self) -> int:
        return len({c for _, c in self.items})

    def words(self) -> set[str]:
        return {w for w, _ in self.items}

    def __len__(self) -> int:
        return len(self.items)


EvalSet = Union[Benchmark, CategorySet]


def expand_names(names: Iterable[str] | str) -> list[str]:
    """Names as given, with "all" replaced by every shipped set (similarity, then categorisation); no repeats."""
    names = [names] if isinstance(names, str) else list(names)
    out: list[str] = []
    for n in names:
        for m in ([*SHIPPED, *CATEGORISATION] if str(n) == ALL else [str(n)]):
            if m not in out:
                out.append(m)
    return out


def is_categorisation(name_or_path: str | os.PathLike) -> bool:
    """A shipped categorisation set, or a .csv file whose header has `category` and `word` columns."""
    key = str(name_or_path)
    if key in CATEGORISATION:
        return True
    if key in SHIPPED or not key.lower().endswith(".csv") or not Path(key).is_file():
        return False
    return {"category", "word"} <= set(_csv_header(Path(key)))


def load_set(name_or_path: str | os.PathLike | EvalSet) -> EvalSet:
    """A Benchmark or a CategorySet, by shipped name or file (see `is_categorisation`); objects pass through."""
    if isinstance(name_or_path, (Benchmark, CategorySet)):
        return name_or_path
    return load_categories(name_or_path) if is_categorisation(name_or_path) else load_benchmark(name_or_path)


def load_benchmark(name_or_path: str | os.PathLike) -> Benchmark:
    """A shipped benchmark by name, or a user file of `word1 word2 score` lines (tab or space separated)."""
    key = str(name_or_path)
    if key in SHIPPED:
        return Benchmark(key, _read_pairs(DATA_DIR / SHIPPED[key]))
    path = Path(key)
    if not path.is_file():
        raise UserError(f"{key}: no such benchmark file, and not a shipped benchmark "
                        f"({', '.join([*SHIPPED, *CATEGORISATION, ALL])})")
    return Benchmark(path.stem, _read_pairs(path))


def load_categories(name_or_path: str | os.PathLike) -> CategorySet:
    """A shipped categorisation set by name, or a .csv file with columns `category` and `word`."""
    key = str(name_or_path)
    path = DATA_DIR / CATEGORISATION[key] if key in CATEGORISATION else Path(key)
    if not path.is_file():
        raise UserError(f"{key}: no such categorisation file, and not a shipped benchmark ({', '.join(CATEGORISATION)})")
    by_word: dict[str, list[str]] = {}
    for lineno, row in _csv_rows(path, ("category", "word")):
        word, cat = row["word"].strip(), row["category"].strip()
        if not word:
            continue  # the shipped files close each category with a blank row
        if not cat:
            raise UserError(f"{path}:{lineno}: word {word!r} has no category")
        cats = by_word.setdefault(word, [])
        if cat not in cats:
            cats.append(cat)
    if not by_word:
        raise UserError(f"{path}: no words found")
    items = tuple((w, c[0]) for w, c in by_word.items() if len(c) == 1)
    ambiguous = tuple(w for w, c in by_word.items() if len(c) > 1)
    return CategorySet(key if key in CATEGORISATION else path.stem, items, ambiguous)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return [h.strip() for h in next(csv.reader(fh), [])]
    except (UnicodeDecodeError, csv.Error):
        return []


def _csv_rows(path: Path, columns: tuple[str, ...]):
    """(line number, row dict) of a CSV file with a header naming at least `columns`."""
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in columns if c not in header]
    if missing:
        raise UserError(f"{path}:1: CSV header {header} lacks the column(s) {', '.join(missing)}")
    reader.fieldnames = header
    try:
        for row in reader:
            yield reader.line_num, {k: (v or "") for k, v in row.items() if k is not None}
    except csv.Error as e:
        raise UserError(f"{path}:{reader.line_num}: bad CSV ({e})") from None


def _read_pairs(path: Path) -> tuple[tuple[str, str, float], ...]:
    if path.suffix.lower() == ".csv" and {"word1", "word2"} <= set(_csv_header(path)):
        rows = ((n, [r["word1"], r["word2"], r.get("similarity") or r.get("score", "")])
                for n, r in _csv_rows(path, ("word1", "word2")))
    else:
        rows = _line_rows(path)
    pairs = []
    for lineno, parts in rows:
        parts = [p.strip() for p in parts]
        try:
            score = float(parts[2])
        except ValueError:
            raise UserError(f"{path}:{lineno}: score {parts[2]!r} is not a number") from None
        if not math.isfinite(score) or not parts[0] or not parts[1]:
            raise UserError(f"{path}:{lineno}: bad pair {' '.join(parts)[:80]!r}")
        pairs.append((parts[0], parts[1], score))
    if not pairs:
        raise UserError(f"{path}: no pairs found")
    return tuple(pairs)


def _line_rows(path: Path):
    """(line number, [word1, word2, score]) of each `word1 word2 score` line (tab, else space separated)."""
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) != 3:
            raise UserError(f"{path}:{lineno}: expected 'word1 word2 score', got {line[:80]!r}")
        yield lineno, parts


def benchmark_vocabulary(names: Iterable[str] = ("men", "ws353")) -> set[str]:
    """All words of the given sets (as written in the files); "all" names every shipped set."""
    vocab: set[str] = set()
    for n in expand_names(names):
        vocab |= load_set(n).words()
    return vocab

"""Word-relatedness benchmarks: the shipped ones by name, any other from a file.

    bench = load_benchmark("men")             # or "ws353", "ws353_similarity", "ws353_relatedness",
    bench.pairs[0]  # ('sun', 'sunlight', 50.0)  "simlex999", "rg65", "mturk287", "rw" (Stanford Rare
                    #                            Words), or a path to "word1 word2 score" lines
    vocab = benchmark_vocabulary(["men", "ws353"])

Every pair is kept in file order, duplicates included (money/cash is in WS353 twice).
Data files and their citations: mmlightning/data/benchmarks/CITATION.md. (A root module, not part of
evaluation/: `shard` reads the benchmarks' words too, and images/ lies below evaluation/ in the data order.
The speed scripts are the top-level `benchmarks/` folder.)
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

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
}
# The paper's benchmarks and their splits: what `evaluate` scores when none are named (the later
# additions rg65, mturk287, rw are scored when named, and by the dev/test protocol's test-only list).
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


def load_benchmark(name_or_path: str | os.PathLike) -> Benchmark:
    """A shipped benchmark by name, or a user file of `word1 word2 score` lines (tab or space separated)."""
    key = str(name_or_path)
    if key in SHIPPED:
        return Benchmark(key, _read_pairs(DATA_DIR / SHIPPED[key]))
    path = Path(key)
    if not path.is_file():
        raise UserError(f"{key}: no such benchmark file, and not a shipped benchmark ({', '.join(SHIPPED)})")
    return Benchmark(path.stem, _read_pairs(path))


def _read_pairs(path: Path) -> tuple[tuple[str, str, float], ...]:
    pairs = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        parts = [p.strip() for p in parts]
        if len(parts) != 3:
            raise UserError(f"{path}:{lineno}: expected 'word1 word2 score', got {line[:80]!r}")
        try:
            score = float(parts[2])
        except ValueError:
            raise UserError(f"{path}:{lineno}: score {parts[2]!r} is not a number") from None
        if not math.isfinite(score) or not parts[0] or not parts[1]:
            raise UserError(f"{path}:{lineno}: bad pair {line[:80]!r}")
        pairs.append((parts[0], parts[1], score))
    if not pairs:
        raise UserError(f"{path}: no pairs found")
    return tuple(pairs)


def benchmark_vocabulary(names: Iterable[str] = ("men", "ws353")) -> set[str]:
    """All words of the given benchmarks (as written in the files)."""
    vocab: set[str] = set()
    for n in names:
        vocab |= load_benchmark(n).words()
    return vocab

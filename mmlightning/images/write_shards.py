"""The `shard` command: pick up to N images per concept word from a source, write WebDataset shards.

    python -m mmlightning shard --config configs/shard_tuxpaint.yaml
    python -m mmlightning shard --source imagenet --root /data/imagenet --output_dir checkpoints/shards/imagenet
    python -m mmlightning shard --config configs/shard_tuxpaint.yaml --words labelled   # every word it labels

    from mmlightning.images.write_shards import shard
    manifest = shard("tuxpaint", "checkpoints/shards/tuxpaint", n_per_word=20, seed=0)

Output (docs/FORMATS.md): `<output_dir>/<prefix>-000000.tar, ...` with one sample per distinct image
(`__key__` = `<index>_<name>`, no dots; the image as `.jpg` for JPEG originals else `.png`, RGB,
transparency on white, longest side <= max_side; `.json` = {"words", "source", "path", "label"}) and
`<output_dir>/manifest.json` (shards and sample counts, images per word, source, N, seed, skipped
images with reasons, words without images, and the coverage of each benchmark: words and pairs with
images). The coverage table is printed too. `words="labelled"` asks for every word the source labels
(`labelled_words()` of mmlightning.images.sources) plus the benchmarks' words (so the coverage, and Table 1,
keep theirs); a word's images do not depend on the other words asked for (seeded per word).

Written with `webdataset.TarWriter` (fixed mtime, owner and mode: identical runs give identical bytes),
so any WebDataset reader loads the shards. Resumable and atomic (`mmlightning.resumable.ResumableOutput`):
the settings are recorded at the start (`.shard-record.json`), each shard is written to a temporary file
and renamed, then its record (samples, words, skipped images) is written to `.progress/<shard>.json`;
the manifest and the record's completion come last. A rerun with the same settings reuses
finished shards (or returns at once when done); other settings in the same folder are refused unless
`overwrite=True`. The folder is locked while a run writes it; a killed run's temporary files are removed.
A full disk (or quota) is one line naming the folder and how many shards were finished and kept; the same
command rerun after freeing space resumes from them. Shard names are `<prefix>-NNNNNN.tar` with a plain
`prefix` (no `/` or `..`), so nothing is written outside output_dir; only regular files of at most
`max_image_mb` are read from the source (others are skipped images, listed in the manifest).
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import webdataset as wds

from mmlightning.atomic import atomic_path, write_json
from mmlightning.datasets import SHIPPED, load_benchmark
from mmlightning.errors import UserError
from mmlightning.folder_lock import FolderLock
from mmlightning.resumable import ResumableOutput
from mmlightning.images.sources import labelled_words, open_source
from mmlightning.images.sources.base import ImageRef, Selection
from mmlightning.images.sources.imageio import ImageError, encode_image, load_image

FORMAT = "mmlightning-shards/1"
PROGRESS = ".progress"  # per-shard records of a run in progress
DEFAULT_MAX_IMAGE_MB = 64.0  # = imageio.MAX_IMAGE_BYTES
PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # shard names stay inside output_dir
DISK_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}
LABELLED = "labelled"  # words=: every word the source labels, plus the benchmarks' words
log = logging.getLogger(__name__)


def shard(
    source: str = "tuxpaint",
    output_dir: Optional[str] = None,
    root: Optional[str] = None,
    words: Optional[str] = None,
    benchmarks: list[str] = ["men", "ws353"],
    n_per_word: int = 20,
    seed: int = 0,
    max_side: int = 512,
    samples_per_shard: int = 256,
    prefix: str = "shard",
    options: Optional[dict] = None,
    workers: int = 2,
    overwrite: bool = False,
    min_shards: int = 1,
    max_image_mb: float = 64.0,
) -> Path:
    """Select up to N images per word from an image source and write WebDataset shards + manifest.json.

    Args:
        source: Image source: tuxpaint, openclipart, imagenet, esp or folder.
        output_dir: Folder for the shards and manifest.json (created; reruns resume here); default checkpoints/shards/<source>.
        root: Root folder of the source (needed for imagenet, esp, folder; Debian paths by default otherwise).
        words: Concept words: a word-list file (one per line), a benchmark name or file, or labelled (every word the source labels, plus the benchmarks'); default: the vocabulary of `benchmarks`.
        benchmarks: Benchmarks whose coverage (words and pairs with images) is reported; also the default words.
        n_per_word: N, the most images selected per word.
        seed: Seed of the per-word image sampling.
        max_side: Longest side, in pixels, of the stored images (larger ones are downscaled).
        samples_per_shard: Samples (distinct images) per tar shard.
        prefix: Shard file name prefix (<prefix>-000000.tar).
        options: Source options, e.g. {all_senses: true, backoff: true} (imagenet), {description: nouns, subtree: true} (tuxpaint; `subtree` for every labelled source), {max_per_group: 10, max_keyword_files: 300} (openclipart).
        workers: Threads decoding / rendering images.
        overwrite: Replace shards of different settings found in output_dir.
        min_shards: At least this many shards when there are enough images (smaller shards than
            samples_per_shard if needed), so that every loader worker of every rank has whole shards to read.
        max_image_mb: The most MiB read from one image file (or tar member); a larger one is a skipped image.
            Only regular files are read: a FIFO, device or socket named like an image is a skipped image too.

    Returns:
        The path of the written manifest.json.
    """
    _check_options(n_per_word, samples_per_shard, max_side, min_shards, prefix, max_image_mb)
    out = Path(output_dir or f"checkpoints/shards/{source}")
    vocab = resolve_words(None if words == LABELLED else words, benchmarks)
    src = open_source(source, root, **(options or {}))
    labelled = labelled_words(src) if words == LABELLED else None
    vocab = sorted(set(vocab).union(labelled or []))
    what = "" if labelled is None else f" ({len(labelled)} labelled by the source + the benchmarks')"
    print(f"shard: {len(vocab)} words{what}, source {source}, N={n_per_word}, seed={seed}")
    sel = src.candidates(vocab, n_per_word, seed)
    if labelled is not None:
        sel.notes["labelled_words"] = len(labelled)
    plan = plan_samples(sel)
    settings = _settings(source, root, options, n_per_word, seed, max_side,
                         shard_size(len(plan), samples_per_shard, min_shards), prefix, min_shards, max_image_mb)
    fingerprint = _fingerprint(settings, plan)
    manifest_path = out / "manifest.json"
    record = ResumableOutput(out, {"format": FORMAT, "fingerprint": fingerprint}, what="shard run",
                             record=".shard-record.json", legacy=(".shard-settings.json", ".shard-done.json"))
    if record.done() and manifest_path.is_file():
        old = _read_json(manifest_path)
        print(f"shard: {manifest_path} is up to date ({old.get('samples')} samples)")
        print_coverage(old.get("coverage", {}))
        return manifest_path
    n_shards = -(-max(len(plan), 1) // settings["samples_per_shard"])
    with FolderLock(out, "shard"), _disk_full_is_one_line(out, n_shards):
        _begin(record, manifest_path, fingerprint, overwrite)
        shards, img_skipped = write_shards(out, plan, src.name, settings, workers)
        word_counts = _word_counts(shards)
        manifest = _manifest(settings, max_image_mb, fingerprint, shards, img_skipped, word_counts, vocab, sel,
                             benchmarks)
        write_json(manifest_path, manifest)
        record.finish({"manifest": "manifest.json"}, samples=manifest["samples"])
        shutil.rmtree(out / PROGRESS, ignore_errors=True)
    print(f"shard: wrote {manifest['samples']} images in {len(shards)} shards to {out} "
          f"({len(word_counts)} words with images, {len(manifest['skipped'])} skipped)")
    print_coverage(manifest["coverage"])
    return manifest_path


def _manifest(settings, max_image_mb, fingerprint, shards, img_skipped, word_counts, vocab, sel, benchmarks) -> dict:
    """The manifest.json of a finished run (docs/FORMATS.md)."""
    return {
        **{k: settings[k] for k in ("format", "source", "root", "options", "n_per_word", "seed", "max_side")},
        "max_image_mb": max_image_mb,
        "fingerprint": fingerprint,
        "shards": [{"name": s["name"], "samples": s["samples"]} for s in shards],
        "samples": sum(s["samples"] for s in shards),
        "words_requested": len(vocab),
        "word_counts": dict(sorted(word_counts.items())),
        "skipped": sel.skipped + img_skipped,
        "missing_words": dict(sorted(sel.missing.items())),
        "coverage": coverage(word_counts, benchmarks),
        "notes": sel.notes,
    }


def _check_options(n_per_word, samples_per_shard, max_side, min_shards, prefix, max_image_mb) -> None:
    """One-line UserErrors for numbers out of range and a prefix that would put shards outside output_dir."""
    if n_per_word < 1 or samples_per_shard < 1 or max_side < 16 or min_shards < 1:
        raise UserError("shard: n_per_word, samples_per_shard and min_shards must be >= 1 and max_side >= 16")
    if not isinstance(prefix, str) or not PREFIX.fullmatch(prefix) or ".." in prefix:
        raise UserError(f"shard: prefix must be a plain file name start (letters, digits, '_', '-', '.'; "
                        f"no '/' or '..'), got {prefix!r}")
    if isinstance(max_image_mb, bool) or not isinstance(max_image_mb, (int, float)) \
            or not 0 < max_image_mb < float("inf"):
        raise UserError(f"shard: max_image_mb must be a number of MiB > 0, got {max_image_mb!r}")


@contextmanager
def _disk_full_is_one_line(out: Path, n_shards: int):
    """A full disk (or quota) while the run writes `out` becomes one UserError saying what was kept."""
    try:
        yield
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        kept = sum((out / p.name[:-len(".json")]).is_file() for p in (out / PROGRESS).glob("*.tar.json"))
        where = f" ({e.filename})" if e.filename else ""
        raise UserError(f"{out}: {DISK_FULL[e.errno]} while writing the shards{where}; {kept} of {n_shards} "
                        f"shards finished and kept: free some space and rerun the same command, it resumes "
                        f"from them") from None


def _begin(record: ResumableOutput, manifest_path: Path, fingerprint: str, overwrite: bool) -> None:
    """Start or resume a run in the folder: foreign settings refused unless `overwrite`; leftovers removed."""
    out = record.dir
    if manifest_path.is_file() and not record.started() and not overwrite:
        old = _read_json(manifest_path)  # a folder written before settings were recorded
        if old.get("fingerprint") != fingerprint:
            raise UserError(f"{manifest_path}: shards of other settings are here; choose another output_dir "
                            f"or pass --overwrite true")
    foreign = record.exists() and not record.started()
    if foreign and not overwrite:
        raise UserError(f"{manifest_path}: shards of other settings are here; choose another output_dir "
                        f"or pass --overwrite true")
    if foreign or overwrite:  # start over in place (the folder and its lock stay)
        record.forget()
        shutil.rmtree(out / PROGRESS, ignore_errors=True)
    record.begin()
    manifest_path.unlink(missing_ok=True)
    for tmp in out.glob(".*.tmp"):  # atomic writes a killed run left half-done
        tmp.unlink()


def _settings(source, root, options, n_per_word, seed, max_side, samples_per_shard, prefix, min_shards,
              max_image_mb=DEFAULT_MAX_IMAGE_MB) -> dict:
    """What the shards depend on (their fingerprint); min_shards and max_image_mb only when not the default,
    so older shards keep theirs."""
    settings = {"format": FORMAT, "source": source, "root": root, "options": options or {},
                "n_per_word": n_per_word, "seed": seed, "max_side": max_side,
                "samples_per_shard": samples_per_shard, "prefix": prefix}
    if min_shards != 1:
        settings["min_shards"] = min_shards
    if max_image_mb != DEFAULT_MAX_IMAGE_MB:
        settings["max_image_mb"] = max_image_mb
    return settings


def shard_size(n_samples: int, samples_per_shard: int, min_shards: int) -> int:
    """Samples per shard: `samples_per_shard`, smaller where that would give fewer than `min_shards` shards."""
    if min_shards <= 1:
        return samples_per_shard
    return max(1, min(samples_per_shard, -(-n_samples // min_shards)))


def resolve_words(words: str | None, benchmarks: list[str]) -> list[str]:
    """The concept words: a word-list file, a benchmark (name or pairs file), or the benchmarks' vocabulary."""
    if words is None:
        names = benchmarks
    elif words in SHIPPED:
        names = [words]
    else:
        path = Path(words)
        if not path.is_file():
            raise UserError(f"{words}: no such word list, and not a shipped benchmark ({', '.join(SHIPPED)})")
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()  # a BOM is not part of a word
        except UnicodeDecodeError as e:
            raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        content = [(i, ln.strip()) for i, ln in enumerate(lines, 1) if ln.strip() and not ln.startswith("#")]
        if content and len(content[0][1].split()) == 3:
            names = [str(path)]   # a `word1 word2 score` benchmark file
        else:
            for lineno, line in content:
                if len(line.split()) != 1:
                    raise UserError(f"{path}:{lineno}: expected one word per line, got {line[:60]!r}")
            if not content:
                raise UserError(f"{path}: no words")
            return sorted({line for _, line in content})
    vocab: set[str] = set()
    for name in names:
        vocab |= load_benchmark(name).words()
    return sorted(vocab)


def plan_samples(sel: Selection) -> list[tuple[ImageRef, list[str]]]:
    """One entry per distinct image (sorted by path) with every word that selected it."""
    by_path: dict[str, tuple[ImageRef, list[str]]] = {}
    for word, refs in sorted(sel.by_word.items()):
        for ref in refs:
            by_path.setdefault(ref.path, (ref, []))[1].append(word)
    return [by_path[p] for p in sorted(by_path)]


def sample_key(index: int, path: str) -> str:
    """A unique WebDataset key without dots: '<index>_<file name>'."""
    name = path.rsplit("::", 1)[-1].replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return f"{index:07d}_{re.sub(r'[^A-Za-z0-9_-]+', '_', name)[:48]}"


def _render(item):
    ref, max_side, max_bytes = item
    try:
        return encode_image(load_image(ref, max_side, max_bytes=max_bytes), ref.path), None
    except ImageError as e:
        return None, str(e)


def write_shards(out: Path, plan, source_name: str, settings: dict, workers: int):
    """Write (or reuse) every shard of the plan; returns (shard records, skipped images).

    A tqdm bar counts the plan's images (like bovw's and Lightning's bars, always on: logs get its updates
    too); shards a killed run finished start it (`initial`), so its rate and ETA are this run's."""
    from tqdm import tqdm

    size, max_side, prefix = settings["samples_per_shard"], settings["max_side"], settings["prefix"]
    max_bytes = math.ceil(settings.get("max_image_mb", DEFAULT_MAX_IMAGE_MB) * 2 ** 20)
    chunks = [(f"{prefix}-{start // size:06d}.tar", start, plan[start:start + size])
              for start in range(0, max(len(plan), 1), size)]
    finished = {name for name, _, _ in chunks if (out / PROGRESS / f"{name}.json").is_file() and (out / name).is_file()}
    records, skipped = [], []
    with tqdm(total=len(plan), initial=sum(len(c) for n, _, c in chunks if n in finished), desc="shard",
              unit="img") as bar, ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for name, start, chunk in chunks:
            progress = out / PROGRESS / f"{name}.json"
            if name in finished:
                done = _read_json(progress)
            else:
                results = pool.map(_render, [(ref, max_side, max_bytes) for ref, _ in chunk])
                done = _write_tar(out / name, start, chunk, _counted(results, bar), source_name)
                write_json(progress, done)  # after the shard's rename: a record means a finished shard
            records.append({"name": name, **done})
            skipped += done["skipped"]
    return records, skipped


def _counted(results, bar):
    """The rendered images in order, one step of the bar each as it comes."""
    for result in results:
        bar.update(1)
        yield result


def _write_tar(path: Path, start: int, chunk, results, source_name: str) -> dict:
    """Write one shard atomically with webdataset's TarWriter; returns {"samples", "words", "skipped"}."""
    words_written, skipped = [], []
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh, wds.TarWriter(fh, encoder=False, user="", group="", mode=0o644, mtime=0) as tar:
            for offset, ((ref, words), (encoded, error)) in enumerate(zip(chunk, results)):
                if encoded is None:
                    skipped.append({"path": ref.path, "reason": error, "words": words})
                    continue
                data, ext = encoded
                meta = {"words": words, "source": source_name, "path": ref.path, "label": ref.label}
                tar.write({"__key__": sample_key(start + offset, ref.path), ext: data,
                           "json": json.dumps(meta, ensure_ascii=False).encode("utf-8")})
                words_written.append(words)
        tmp.chmod(0o644)
    return {"samples": len(words_written), "words": words_written, "skipped": skipped}


def _word_counts(shards: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in shards:
        for words in s["words"]:
            for w in words:
                counts[w] = counts.get(w, 0) + 1
    return counts


def coverage(word_counts: dict[str, int], benchmarks: list[str]) -> dict:
    """Per benchmark: words and pairs (both words) that have at least one image."""
    report = {}
    for name in benchmarks:
        bench = load_benchmark(name)
        words = bench.words()
        pairs_ok = sum(1 for a, b, _ in bench.pairs if word_counts.get(a) and word_counts.get(b))
        report[bench.name] = {"words": len(words), "words_with_images": sum(1 for w in words if word_counts.get(w)),
                              "pairs": len(bench.pairs), "pairs_with_images": pairs_ok}
    return report


def print_coverage(report: dict) -> None:
    for name, c in report.items():
        print(f"coverage {name}: {c['words_with_images']}/{c['words']} words, "
              f"{c['pairs_with_images']}/{c['pairs']} pairs with images")


def _fingerprint(settings: dict, plan) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for ref, words in plan:
        h.update(f"{ref.path}\t{','.join(words)}\n".encode())
    return h.hexdigest()[:16]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: unreadable ({e}); delete it to start over") from None

"""The release: image embeddings and multi-modal vectors for every label with images, plus a card.

    <reports>/release/CARD.json, CARD.md
    <reports>/release/<source>/mean.txt, max.txt          CNN-Mean / CNN-Max visual vectors (word2vec text)
    <reports>/release/<source>/multimodal_alpha<a>.txt    Eq. 1 with this run's alpha

The folder is the release's own: `.release-record.json` lists every file it wrote, with its size and SHA-1.
A file of an earlier run that this run does not write (a multi-modal file of another alpha, a source no
longer configured) is removed once the new files are written, and only when the record says the
release wrote it and its content is unchanged. Anything else in the folder (your notes, a file you
edited) is never deleted: the run is refused, before its first stage, naming those files
(`check_release`). A release written before the record existed is recognised by its CARD.json.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from mmlightning.atomic import atomic_path, clean_stale_temps, safe_child, write_json, write_text
from mmlightning.errors import UserError

log = logging.getLogger(__name__)

FORMAT = "mmlightning-release/1"
RECORD = ".release-record.json"
CARD_NOTE = ("Eq. 1: alpha * L2(centre(text)) || (1 - alpha) * L2(centre(CNN-Mean)); centring over the released "
             "words; only words with both a text vector and images are released")


def _release_source(out: Path, name: str, ex: dict, ling, alpha: float) -> dict[str, Any]:
    """Copy one source's visual vectors, fuse them with the text vectors; its entry of the card."""
    from mmlightning.evaluation.fusion import fuse_keyed
    from mmlightning.features.aggregates import load_aggregates
    from mmlightning.vectors import load_vectors

    agg, meta = load_aggregates(ex["aggregates"])
    mean_p, max_p = safe_child(out, name, "mean.txt", what="source"), safe_child(out, name, "max.txt", what="source")
    for src, dst in ((ex["mean"], mean_p), (ex["max"], max_p)):  # written by the extract stage
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    mean_kv = load_vectors(mean_p)
    mm = fuse_keyed(ling, mean_kv, words=mean_kv.index_to_key, alpha=alpha)
    mm_p = safe_child(out, name, f"multimodal_alpha{alpha:g}.txt", what="source")
    mm.save_word2vec(mm_p)
    return {"visual_mean": str(mean_p), "visual_max": str(max_p), "multimodal": str(mm_p),
            "labels_with_images": len(mean_kv), "labels_with_text_and_images": len(mm),
            "image_word_pairs": int(agg.count.sum()), "feature_dim": mean_kv.vector_size,
            "backbone": meta.get("backbone"), "layer": meta.get("layer"), "preprocess": meta.get("preprocess")}


def _text_line(settings: dict) -> str:
    """Where the text vectors come from: the user's own file (name, SHA-1) or skip-gram on the corpus."""
    own = settings.get("linguistic")
    if own:
        return f"text vectors: your own file `{own.get('file')}` (sha1 {own.get('sha1')})"
    return f"text vectors: skip-gram on {settings.get('corpus')}"


def card_markdown(files: dict[str, dict], alpha: float, settings: dict) -> str:
    """CARD.md: one table row per source."""
    layer = next(iter(files.values()), {}).get("layer") or settings.get("layer")
    lines = ["# mmlightning release: image embeddings and multi-modal vectors", "",
             f"alpha = {alpha}, centring = on, backbone = {settings.get('backbone')}, layer = {layer}",
             "", _text_line(settings), "",
             "| source | selection (N per word, options) | preprocess | labels with images | image-word pairs | "
             "multi-modal words | dim | files |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for name, f in files.items():
        spec = (settings.get("sources") or {}).get(name, {})
        opts = ", ".join(f"{k}={v}" for k, v in sorted((spec.get("options") or {}).items()))
        selection = f"{spec.get('source', name)}, N={spec.get('n_per_word', '?')}" + (f", {opts}" if opts else "")
        lines.append(f"| {name} | {selection} | {f['preprocess']} | {f['labels_with_images']} | "
                     f"{f['image_word_pairs']} | {f['labels_with_text_and_images']} | {f['feature_dim']} | "
                     f"{Path(f['visual_mean']).name}, {Path(f['visual_max']).name}, {Path(f['multimodal']).name} |")
    return "\n".join(lines) + "\n"


def _content(path: Path) -> dict:
    from mmlightning.pipeline.fingerprint import Fingerprints

    return Fingerprints().file(path)


def _record(out: Path) -> dict[str, dict | None]:
    """{path inside the release: {size, sha1}} of the files the release wrote (None: named by an older card)."""
    rec_file, card_file = out / RECORD, out / "CARD.json"
    try:
        if rec_file.is_file():
            return dict(json.loads(rec_file.read_text(encoding="utf-8"))["files"])
        if card_file.is_file():  # written before the record existed: the card names the files
            card = json.loads(card_file.read_text(encoding="utf-8"))
            if card.get("format") == FORMAT:
                named = [Path(f[k]) for f in card.get("files", {}).values()
                         for k in ("visual_mean", "visual_max", "multimodal") if f.get(k)]
                return {**{f"{p.parent.name}/{p.name}": None for p in named}, "CARD.json": None, "CARD.md": None}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{rec_file}: unreadable record of the release ({e}); move the folder {out} aside "
                        f"and rerun") from None
    return {}


def _present(out: Path) -> list[str]:
    """Every file, link and other non-folder entry under `out` (links not followed), as paths inside it.

    Temporary files left by a release killed midway are removed first (`clean_stale_temps`)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(out):
        base = Path(dirpath)
        gone = {p.name for p in clean_stale_temps(base)}
        filenames = [n for n in filenames if n not in gone]
        links = [d for d in dirnames if (base / d).is_symlink()]
        dirnames[:] = sorted(d for d in dirnames if d not in links)
        found += [(base / n).relative_to(out).as_posix() for n in sorted(filenames + links)]
    return sorted(f for f in found if f != RECORD)


def check_release(out: str | os.PathLike) -> dict[str, dict | None]:
    """The record of the release folder `out`; a one-line UserError if it holds anything the release did not write.

    A file is the release's own when its record lists it, with the same size and SHA-1 (a file you edited
    since is yours). Runs before the first stage and again before the release is written.
    """
    out = Path(out)
    if not out.is_dir():
        return {}
    record = _record(out)
    foreign = []
    for rel in _present(out):
        if rel not in record or ((out / rel).is_symlink() or not (out / rel).is_file()):
            foreign.append(rel)
        elif record[rel] is not None and _content(out / rel) != record[rel]:
            foreign.append(f"{rel} (changed since reproduce wrote it)")
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise UserError(f"{out}: {shown} not written by reproduce (this folder holds only the release, rewritten "
                        f"by every run, and nothing else in it is deleted); move them elsewhere, or set reports: "
                        f"to another folder")
    return record


def _remove_stale(out: Path, stale: list[str]) -> None:
    """Remove files of an earlier release (checked as the release's own), then their folders left empty."""
    for rel in stale:
        path = out / rel
        if path.is_file():
            path.unlink()
            log.info("release: removed %s (an earlier run's, not part of this one)", path)
        for parent in path.parents:
            if parent == out or not parent.is_relative_to(out):
                break
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()


def write_release(out: Path, linguistic_path: str, extracted: dict[str, dict], alpha: float, settings: dict) -> dict:
    """Visual (mean, max) and multi-modal word2vec files for every label with images, plus a metadata card.

    `extracted`: {source: the extract stage's outputs (aggregates, mean, max)}. Returns the card.
    """
    from mmlightning.vectors import load_vectors

    out = Path(out)
    old = check_release(out)
    out.mkdir(parents=True, exist_ok=True)
    new = ["CARD.json", "CARD.md"] + [f"{name}/{f}" for name in extracted
                                      for f in ("mean.txt", "max.txt", f"multimodal_alpha{alpha:g}.txt")]
    # the record first names what is about to be written, so that a run killed midway still owns its files
    write_json(out / RECORD, {"format": FORMAT, "files": {**old, **{rel: None for rel in new}}})
    ling = load_vectors(linguistic_path)
    files = {name: _release_source(out, name, ex, ling, alpha) for name, ex in extracted.items()}
    card = {"format": FORMAT, "settings": settings, "linguistic": str(linguistic_path), "files": files,
            "multimodal": CARD_NOTE}
    write_json(out / "CARD.json", card)
    write_text(out / "CARD.md", card_markdown(files, alpha, settings))
    _remove_stale(out, [rel for rel in old if rel not in new])
    write_json(out / RECORD, {"format": FORMAT, "files": {rel: _content(out / rel) for rel in new}})
    return card

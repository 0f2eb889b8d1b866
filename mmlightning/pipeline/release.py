"""The release: image embeddings and multi-modal vectors for every label with images, plus a card.

    <reports>/release/CARD.json, CARD.md
    <reports>/release/<source>/mean.txt, max.txt          CNN-Mean / CNN-Max visual vectors (word2vec text)
    <reports>/release/<source>/multimodal_alpha<a>.txt    Eq. 1 with this run's alpha

The folder holds exactly this run's files: anything else in it (a multi-modal file of another alpha,
a source no longer configured) is removed once the new files are written.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from mmlightning.atomic import atomic_path, safe_child, write_json, write_text

log = logging.getLogger(__name__)

FORMAT = "mmlightning-release/1"
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


def prune(folder: Path, keep: set[Path]) -> list[Path]:
    """Remove every file and empty folder under `folder` that is not in `keep`; returns what was removed."""
    keep = {p.resolve() for p in keep}
    removed = []
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_file() or path.is_symlink():
            if path.resolve() not in keep:
                path.unlink()
                removed.append(path)
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
            removed.append(path)
    return removed


def write_release(out: Path, linguistic_path: str, extracted: dict[str, dict], alpha: float, settings: dict) -> dict:
    """Visual (mean, max) and multi-modal word2vec files for every label with images, plus a metadata card.

    `extracted`: {source: the extract stage's outputs (aggregates, mean, max)}. Returns the card.
    """
    from mmlightning.vectors import load_vectors

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ling = load_vectors(linguistic_path)
    files = {name: _release_source(out, name, ex, ling, alpha) for name, ex in extracted.items()}
    card = {"format": FORMAT, "settings": settings, "linguistic": str(linguistic_path), "files": files,
            "multimodal": CARD_NOTE}
    write_json(out / "CARD.json", card)
    write_text(out / "CARD.md", card_markdown(files, alpha, settings))
    keep = {out / "CARD.json", out / "CARD.md"}
    keep |= {Path(f[k]) for f in files.values() for k in ("visual_mean", "visual_max", "multimodal")}
    for path in prune(out, keep):
        log.info("release: removed %s (not part of this run)", path)
    return card

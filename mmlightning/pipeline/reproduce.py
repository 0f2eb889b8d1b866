"""The main job: reproduce Kiela & Bottou (2014) end to end, reusing every stage's cached output.

    python -m mmlightning reproduce --config configs/reproduce.yaml            # embedded default
    python -m mmlightning reproduce --config configs/reproduce_paper.yaml      # text8 + BNC, ImageNet, ESP
    python -m mmlightning reproduce --config configs/reproduce.yaml --force '[extract]'

Stages (each cached in `<checkpoints>/<stage>-<key>/`, the key hashing its settings and the keys of the
stages it reads, see `mmlightning.pipeline.stages`):
  1. skipgram            text vectors (`mmlightning.text.skipgram.train_skipgram`)
  2. shard:<source>      up to N images per concept word, WebDataset shards (`mmlightning.images.write_shards.shard`)
  3. extract:<source>    CNN features aggregated per word: CNN-Mean, CNN-Max (`mmlightning.features.extract`)
  4. bovw:<source>       dense SIFT codebook + histograms aggregated per word (`mmlightning.features.bovw`)
  5. evaluate            Table 1, Figure 4, Table 2 into `<reports>/` (always recomputed: seconds)
  6. release             visual (mean, max) and multi-modal word2vec files for every label with images,
                         with a metadata card, into `<reports>/release/`
A changed setting recomputes its stage and the stages that read it; `--force` names stages to
recompute anyway (with their dependants). Killing the run at any moment and rerunning it resumes:
finished stages are reused, an interrupted one resumes inside its own folder.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

from mmlightning.atomic import atomic_path, write_json, write_text
from mmlightning.errors import UserError
from mmlightning.pipeline.stages import Stage

STAGES = ("skipgram", "shard", "extract", "bovw", "evaluate", "release")
DEPENDANTS = {"skipgram": {"evaluate", "release"}, "shard": {"extract", "bovw", "evaluate", "release"},
              "extract": {"evaluate", "release"}, "bovw": {"evaluate", "release"}, "evaluate": {"release"},
              "release": set()}
DEFAULT_SOURCES = {
    "tuxpaint": {"source": "tuxpaint", "n_per_word": 20, "options": {"subtree": True}},
    "openclipart": {"source": "openclipart", "n_per_word": 10},
}


def expand_force(force: list[str]) -> set[str]:
    """The forced stages plus every stage that depends on them."""
    bad = [f for f in force if f not in STAGES]
    if bad:
        raise UserError(f"--force: unknown stage(s) {', '.join(bad)}; stages are {', '.join(STAGES)}")
    out: set[str] = set()
    todo = list(force)
    while todo:
        s = todo.pop()
        if s not in out:
            out.add(s)
            todo.extend(DEPENDANTS[s])
    return out


class Runner:
    """Runs stages in order, reusing finished ones, and keeps the timing summary."""

    def __init__(self, root: Path, forced: set[str]):
        self.root = root
        self.forced = forced
        self.summary: list[dict[str, Any]] = []

    def run(self, kind: str, label: str, settings: dict, fn) -> tuple[Stage, dict]:
        """Reuse stage `label` if finished with these settings, else run `fn(stage_dir) -> outputs`."""
        stage = Stage(label.replace(":", "-"), self.root, settings)
        n = len(self.summary) + 1
        if kind in self.forced and stage.done():
            stage.reset()
        if stage.done():
            rec = stage.record()
            print(f"[{n}] {label}: reused {stage.dir} (took {rec['seconds']}s when computed)", flush=True)
            self.summary.append({"stage": label, "status": "reused", "seconds": 0.0,
                                 "computed_seconds": rec["seconds"], "dir": str(stage.dir)})
            return stage, rec["outputs"]
        print(f"[{n}] {label}: running -> {stage.dir}", flush=True)
        t0 = time.time()
        stage.begin()
        outputs = stage.finish(fn(stage.dir))
        dt = round(time.time() - t0, 1)
        print(f"[{n}] {label}: done in {dt}s", flush=True)
        self.summary.append({"stage": label, "status": "ran", "seconds": dt, "computed_seconds": dt,
                             "dir": str(stage.dir)})
        return stage, outputs


def reproduce(
    checkpoints: str = "checkpoints",
    reports: str = "reports",
    corpus: list[str] | str = "gcide",
    skipgram: Optional[dict] = None,
    sources: Optional[dict[str, dict]] = None,
    benchmarks: list[str] = ["ws353", "men"],
    backbone: str = "efficientnet_lite0",
    backbone_kwargs: Optional[dict] = None,
    layer: Optional[str] = None,
    bovw: bool = True,
    bovw_k: int = 100,
    bovw_max_images: int = 1000,
    alpha: float = 0.5,
    missing_visual: str = "zero",
    n_boot: int = 1000,
    batch_size: int = 4,
    num_workers: int = 0,
    accelerator: str = "auto",
    devices: int = 1,
    seed: int = 0,
    force: list[str] = [],
) -> dict:
    """Run the paper's experiment end to end (text, images, features, evaluation, release).

    Args:
        checkpoints: Folder of the cached stage outputs (reused between runs).
        reports: Folder for Table 1 / Figure 4 / Table 2 (Markdown, JSON, PNG) and the release.
        corpus: Text corpus for skip-gram: gcide (Debian dict-gcide), text8, or paths (.txt, .txt.gz, folders, BNC XML).
        skipgram: Skip-gram settings passed to train_skipgram (epochs, dim, window, negative, sample, min_count, ...).
        sources: Image sources by name: each a dict of `shard` arguments (source, root, n_per_word, options, ...)
            plus an optional `preprocess` scheme for its CNN features (default: the backbone's own; e.g. esp).
        benchmarks: Benchmarks to evaluate on (and whose vocabulary selects the concept words).
        backbone: CNN backbone for the visual features (efficientnet_lite0, alexnet1512, torchvision names).
        backbone_kwargs: Backbone options, e.g. {checkpoint: path} for alexnet1512.
        layer: Feature layer of the backbone (fc6, fc7 for alexnet1512; default: the backbone's own).
        bovw: Also compute the bag-of-visual-words baseline.
        bovw_k: Size of the BOVW codebook (k-means clusters).
        bovw_max_images: Images sampled per source to fit the BOVW codebook.
        alpha: Weight of the linguistic part in Eq. 1 (Table 1 and the release).
        missing_visual: Multi-modal score of a pair with an imageless word: zero (Eq. 1) or text (text cosine).
        n_boot: Bootstrap resamples for the 95% confidence intervals.
        batch_size: Images per batch in feature extraction (small is fastest on a 2-core CPU; 256 on GPUs).
        num_workers: Data-loading worker processes in feature extraction (0 on a 2-core CPU; 8 on GPUs).
        accelerator: Lightning accelerator for extraction (auto, cpu, gpu).
        devices: Devices for extraction (several run DDP).
        seed: Seed of every stage (image sampling, skip-gram, k-means, bootstrap).
        force: Stages to recompute even if cached: skipgram, shard, extract, bovw, evaluate, release.
    """
    t_start = time.time()
    root = Path(checkpoints)
    reports_dir = Path(reports)
    forced = expand_force(list(force))
    sources = dict(DEFAULT_SOURCES if sources is None else sources)
    if not sources:
        raise UserError("no image sources given (sources: {name: {source: ..., n_per_word: ...}})")
    for name, spec in sources.items():
        if not isinstance(spec, dict) or "source" not in spec:
            raise UserError(f"sources.{name}: needs at least `source:` (tuxpaint, openclipart, imagenet, esp, folder)")
        if spec.get("preprocess") is not None:
            from mmlightning.images.preprocess import get_scheme

            get_scheme(spec["preprocess"])  # an unknown scheme fails now, before any stage runs
    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"alpha {alpha} is outside [0, 1]")
    runner = Runner(root, forced)

    # 1. text
    from mmlightning.text.skipgram import train_skipgram

    # num_workers 0: one process, so the same seed gives the same vectors (Hogwild workers are faster, not bitwise)
    sg = {"epochs": 5, "dim": 100, "window": 5, "negative": 5, "sample": 1e-3, "min_count": 5, "num_workers": 0,
          "seed": seed, **(skipgram or {})}
    sg_settings = {"corpus": corpus, **sg}
    sg_stage, sg_out = runner.run("skipgram", "skipgram", sg_settings, lambda d: {
        "vectors": str(train_skipgram(output_dir=d, corpus=corpus, cache_dir=str(root / "corpus_cache"), **sg))})

    # 2-4. images, per source
    from mmlightning.features.extract import run_extraction
    from mmlightning.images.write_shards import shard

    visual_files: dict[str, str] = {}
    extracted: dict[str, dict] = {}
    for name, spec in sources.items():
        spec = {"seed": seed, "benchmarks": list(benchmarks), **spec}
        preprocess = spec.pop("preprocess", None)
        sh_stage, sh_out = runner.run("shard", f"shard:{name}", spec, lambda d, spec=spec: {
            "shards": str(shard(output_dir=str(d), **spec))})
        shards_dir = sh_out["shards"]  # the manifest.json, which extraction and BOVW accept
        ex_settings = {"shards": sh_stage.key, "backbone": backbone, "backbone_kwargs": backbone_kwargs,
                       "layer": layer, **({"preprocess": preprocess} if preprocess is not None else {})}
        _, ex_out = runner.run("extract", f"extract:{name}", ex_settings, lambda d: _extract(
            run_extraction, shards_dir, d, backbone, backbone_kwargs, layer, preprocess, batch_size,
            num_workers, accelerator, devices))
        visual_files[f"{name}/cnn-mean"] = ex_out["mean"]
        visual_files[f"{name}/cnn-max"] = ex_out["max"]
        extracted[name] = ex_out
        if bovw:
            bv_settings = {"shards": sh_stage.key, "k": bovw_k, "max_images": bovw_max_images, "seed": seed}
            _, bv_out = runner.run("bovw", f"bovw:{name}", bv_settings, lambda d: _bovw(
                run_extraction, shards_dir, d, bovw_k, bovw_max_images, seed, batch_size, num_workers))
            visual_files[f"{name}/bovw"] = bv_out["mean"]

    # 5. evaluation (cheap: always recomputed from the cached vectors)
    from mmlightning.evaluation.systems import load_inputs, evaluate_systems
    from mmlightning.evaluation.report import render_markdown, write_reports

    print(f"[{len(runner.summary) + 1}] evaluate: Table 1, Figure 4, Table 2 -> {reports_dir}", flush=True)
    t0 = time.time()
    ling, vis, benches = load_inputs(sg_out["vectors"], visual_files, list(benchmarks))
    result = evaluate_systems(ling, vis, benches, alpha=alpha, missing_visual=missing_visual, n_boot=n_boot,
                              seed=seed, inputs={"linguistic": sg_out["vectors"], "visual": visual_files})
    paths = write_reports(result, reports_dir)
    runner.summary.append({"stage": "evaluate", "status": "ran", "seconds": round(time.time() - t0, 1)})

    # 6. release
    t0 = time.time()
    card = write_release(reports_dir / "release", sg_out["vectors"], extracted, alpha=alpha, settings={
        "corpus": corpus, "skipgram": sg, "sources": sources, "backbone": backbone, "layer": layer,
        "backbone_kwargs": backbone_kwargs, "alpha": alpha, "centring": True, "seed": seed})
    runner.summary.append({"stage": "release", "status": "ran", "seconds": round(time.time() - t0, 1)})

    total = round(time.time() - t_start, 1)
    summary = {"total_seconds": total, "stages": runner.summary, "reports": {k: str(v) for k, v in paths.items()},
               "release": card}
    write_json(reports_dir / "run_summary.json", summary)
    print()
    print(render_markdown(result, tables=("table1", "diff")))
    print(_summary_table(runner.summary, total))
    return summary


def _extract(run_extraction, shards_dir, out: Path, backbone, backbone_kwargs, layer, preprocess, batch_size,
             num_workers, accelerator, devices) -> dict:
    run_extraction(Path(shards_dir), out, backbone=backbone, backbone_kwargs=backbone_kwargs, layer=layer,
                   preprocess=preprocess, batch_size=batch_size, num_workers=num_workers, accelerator=accelerator,
                   devices=devices)
    _check_images(out / "aggregates.pt", shards_dir)
    return {"aggregates": str(out / "aggregates.pt"), "mean": str(out / "mean.txt"), "max": str(out / "max.txt")}


def _bovw(run_extraction, shards_dir, out: Path, k: int, max_images: int, seed: int, batch_size: int,
          num_workers: int) -> dict:
    from mmlightning.features.bovw import fit_codebook

    codebook = fit_codebook(shards_dir, out / "codebook.pt", k=k, max_images=max_images, seed=seed)
    feats = out / "features"
    run_extraction(Path(shards_dir), feats, backbone="bovw", backbone_kwargs={"codebook": str(codebook)},
                   batch_size=batch_size, num_workers=num_workers, accelerator="cpu", devices=1)
    _check_images(feats / "aggregates.pt", shards_dir)
    return {"codebook": str(codebook), "aggregates": str(feats / "aggregates.pt"),
            "mean": str(feats / "mean.txt"), "max": str(feats / "max.txt")}


def _check_images(aggregates: Path, shards_dir) -> None:
    """A stage that read no image at all is an error, not an empty table."""
    from mmlightning.features.aggregates import load_aggregates

    agg, meta = load_aggregates(aggregates)
    if len(agg) == 0:
        raise UserError(f"{shards_dir}: no image could be read ({meta.get('n_skipped', 0)} samples skipped; "
                        f"the reasons are listed in {aggregates})")


def write_release(out: Path, linguistic_path: str, extracted: dict[str, dict], alpha: float, settings: dict) -> dict:
    """Visual (mean, max) and multi-modal word2vec files for every label with images, plus a metadata card."""
    import shutil

    from mmlightning.features.aggregates import load_aggregates
    from mmlightning.evaluation.fusion import fuse_keyed
    from mmlightning.vectors import load_vectors

    out.mkdir(parents=True, exist_ok=True)
    ling = load_vectors(linguistic_path)
    files: dict[str, Any] = {}
    for name, ex in extracted.items():  # ex: the extract stage's outputs (aggregates, mean, max)
        agg, meta = load_aggregates(ex["aggregates"])
        mean_p, max_p = out / name / "mean.txt", out / name / "max.txt"
        for src, dst in ((ex["mean"], mean_p), (ex["max"], max_p)):  # written by the extract stage
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
        mean_kv = load_vectors(mean_p)
        mm = fuse_keyed(ling, mean_kv, words=mean_kv.index_to_key, alpha=alpha)
        mm_p = out / name / f"multimodal_alpha{alpha:g}.txt"
        mm.save_word2vec(mm_p)
        files[name] = {"visual_mean": str(mean_p), "visual_max": str(max_p), "multimodal": str(mm_p),
                       "labels_with_images": len(mean_kv), "labels_with_text_and_images": len(mm),
                       "image_word_pairs": int(agg.count.sum()), "feature_dim": mean_kv.vector_size,
                       "backbone": meta.get("backbone"), "layer": meta.get("layer"),
                       "preprocess": meta.get("preprocess")}
    card = {"format": "mmlightning-release/1", "settings": settings, "linguistic": linguistic_path,
            "files": files,
            "multimodal": "Eq. 1: alpha * L2(centre(text)) || (1 - alpha) * L2(centre(CNN-Mean)); centring over "
                          "the released words; only words with both a text vector and images are released"}
    write_json(out / "CARD.json", card)
    lines = ["# mmlightning release: image embeddings and multi-modal vectors", "",
             f"alpha = {alpha}, centring = on, backbone = {settings['backbone']}, "
             f"layer = {next(iter(files.values()), {}).get('layer') or settings['layer']}", "",
             "| source | selection (N per word, options) | preprocess | labels with images | image-word pairs | "
             "multi-modal words | dim | files |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for name, f in files.items():
        spec = (settings.get("sources") or {}).get(name, {})
        opts = ", ".join(f"{k}={v}" for k, v in sorted((spec.get("options") or {}).items()))
        selection = f"{spec.get('source', name)}, N={spec.get('n_per_word', '?')}" + (f", {opts}" if opts else "")
        lines.append(f"| {name} | {selection} | {f['preprocess']} | {f['labels_with_images']} | {f['image_word_pairs']} | "
                     f"{f['labels_with_text_and_images']} | {f['feature_dim']} | {Path(f['visual_mean']).name}, "
                     f"{Path(f['visual_max']).name}, {Path(f['multimodal']).name} |")
    write_text(out / "CARD.md", "\n".join(lines) + "\n")
    return card


def _summary_table(summary: list[dict], total: float) -> str:
    lines = ["", "| stage | status | seconds (this run) | seconds (when computed) |", "| --- | --- | ---: | ---: |"]
    for s in summary:
        lines.append(f"| {s['stage']} | {s['status']} | {s['seconds']} | {s.get('computed_seconds', s['seconds'])} |")
    lines.append(f"| total | | {total} | |")
    return "\n".join(lines)

"""The stages of `reproduce`, each declared once: what it reads, what its output depends on, what runs it.

| stage            | reads                    | module that does the work                                  |
| ---------------- | ------------------------ | ---------------------------------------------------------- |
| skipgram         | corpus files             | mmlightning.text.train.train_skipgram (+ RelatednessCallback)  |
|                  | or `linguistic:` file    | (your own text vectors: converted to word2vec text instead) |
| shard:<source>   | source root, word lists  | mmlightning.images.write_shards.shard                      |
| extract:<source> | shard, CNN checkpoint    | mmlightning.features.extract.run_extraction                |
| bovw:<source>    | shard                    | mmlightning.features.bovw.fit_codebook + run_extraction    |
| mmskipgram:<variant> | corpus files, extract | mmlightning.text.train.train_skipgram with a visual objective |
| suite            | skipgram, extract, bovw  | mmlightning.evaluation.systems (every shipped set)          |
| protocol         | skipgram, extract        | mmlightning.evaluation.protocol (dev/test)                  |
| evaluate         | skipgram, extract, bovw, | mmlightning.evaluation.systems + evaluation.report         |
|                  | suite, protocol, shard   | + evaluation.grounding + evaluation.html (pages)             |
| release          | skipgram, extract        | mmlightning.pipeline.release.write_release                 |

Settings that only change speed (batch size, workers, devices, progress bars) are not part of a key.
Paths the user gives (corpus files and folders, source roots, word lists, benchmark files,
checkpoints) enter a key by their content, not by their name, so moving the data keeps the cache
and changing a file recomputes exactly the stages that read it and their dependants.
"""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from mmlightning.errors import UserError
from mmlightning.pipeline.stages import StageContext, StageDef

log = logging.getLogger(__name__)


def user_files(values) -> tuple[list[str], list[str]]:
    """Split names (ws353, labelled) from paths that exist (files or folders): (names, paths). A shipped set's
    name or `labelled` is a name even beside a file of that name in the working folder, as the stages read it
    (write `./men` for the file)."""
    from mmlightning.datasets import ALL, CATEGORISATION, SHIPPED
    from mmlightning.pipeline.config import IMAGE_WORDS

    known = {*SHIPPED, *CATEGORISATION, ALL, *IMAGE_WORDS}
    names, paths = [], []
    for v in values:
        (paths if v is not None and str(v) not in known and Path(str(v)).exists() else names).append(v)
    return names, paths


def corpus_files(cfg) -> list[str]:
    """The corpus files skip-gram reads, in order (aliases and folders expanded); none with `linguistic:`."""
    from mmlightning.text.corpus import resolve_sources

    if getattr(cfg, "linguistic", None):
        return []
    return [str(p) for p in resolve_sources(cfg.corpus_list)]


# ------------------------------------------------------------------------------------------- skipgram
def _skipgram_settings(cfg, source: Optional[str]) -> dict:
    if cfg.linguistic:
        return {"linguistic": "<file>"}   # keyed by the file's content (inputs), not its name
    return {"skipgram": cfg.skipgram.key(), "seed": cfg.seed, "corpus": [Path(f).name for f in corpus_files(cfg)]}


def _skipgram_inputs(cfg, source: Optional[str]) -> list:
    if cfg.linguistic:   # a large gensim .kv keeps its arrays beside it (<file>.vectors.npy, ...), a .npy its words
        from mmlightning.vectors import vocab_path

        own = Path(cfg.linguistic)
        return [cfg.linguistic] + sorted(str(p) for p in own.parent.glob(own.name + ".*.npy")) + \
            [str(p) for p in [vocab_path(own)] if p.is_file()]
    return corpus_files(cfg)


def _own_vectors(ctx: StageContext) -> dict:
    """`linguistic:` given: the user's vectors (any format load_vectors reads) as word2vec text in the stage folder."""
    from mmlightning.vectors import load_vectors

    kv = load_vectors(ctx.cfg.linguistic, unsafe_gensim_pickle=ctx.cfg.unsafe_gensim_pickle)
    check_coverage(ctx.cfg, kv.index_to_key)
    path = ctx.dir / "vectors.txt"
    kv.save_word2vec(path)
    log.info("linguistic: %d vectors of dimension %d from %s", len(kv), kv.vector_size, ctx.cfg.linguistic)
    return {"vectors": path}


def check_coverage(cfg, words) -> None:
    """Your own vectors hold at least one benchmark word, or a one-line UserError naming your file."""
    from mmlightning.datasets import load_benchmark

    benches = [load_benchmark(b) for b in cfg.benchmarks]
    if not set(words) & set().union(*(b.words() for b in benches)):
        raise UserError(f"linguistic: {cfg.linguistic}: no word in common with the benchmarks "
                        f"({', '.join(b.name for b in benches)}); is it the right file (and language)?")


def _skipgram(ctx: StageContext) -> dict:
    from mmlightning.text.train import train_skipgram

    if ctx.cfg.linguistic:
        return _own_vectors(ctx)
    sg = ctx.cfg.skipgram
    callbacks = []
    if sg.relatedness:
        from mmlightning.evaluation.callback import RelatednessCallback

        callbacks.append(RelatednessCallback(benchmarks=list(sg.relatedness)))
    vectors = train_skipgram(sg, ctx.dir, corpus=ctx.cfg.corpus, seed=ctx.cfg.seed,
                             cache_dir=str(ctx.root / "corpus_cache"), callbacks=callbacks, record=False)
    return {"vectors": vectors}


# ------------------------------------------------------------------------------------------- shard
def _shard_settings(cfg, source: Optional[str]) -> dict:
    spec = cfg.sources[source].shard_args()
    spec.pop("workers")
    if spec.get("min_shards") == 1:  # the default is not part of the key: caches made before the option stay valid
        spec.pop("min_shards")
    root, words = spec.pop("root"), spec.pop("words")
    named = set(user_files(cfg.benchmarks + [words])[0])  # the rest are files, keyed by content (inputs)
    return {**spec, "root": None if root is None else "<folder>", "words": words if words in named else "<file>",
            "benchmarks": [b if b in named else "<file>" for b in cfg.benchmarks], "seed": cfg.seed}


def _shard_inputs(cfg, source: Optional[str]) -> list:
    src = cfg.sources[source]
    return [p for p in (src.root,) if p is not None] + user_files([src.words])[1] + user_files(cfg.benchmarks)[1]


def _shard(ctx: StageContext) -> dict:
    from mmlightning.images.write_shards import shard

    manifest = shard(output_dir=str(ctx.dir), seed=ctx.cfg.seed, benchmarks=list(ctx.cfg.benchmarks),
                     **ctx.cfg.sources[ctx.source].shard_args())
    return {"shards": manifest}


# ------------------------------------------------------------------------------------------- extract
def _kwargs_paths(kwargs: Optional[dict]) -> tuple[Optional[dict], list[str]]:
    """backbone_kwargs with the values that name existing files replaced by '<file>', and those files."""
    if not kwargs:
        return kwargs, []
    named, files = {}, []
    for k, v in sorted(kwargs.items()):
        if isinstance(v, str) and Path(v).is_file():
            named[k], files = "<file>", files + [v]
        else:
            named[k] = v
    return named, files


def _extract_settings(cfg, source: Optional[str]) -> dict:
    pre = cfg.sources[source].preprocess
    return {"backbone": cfg.backbone, "backbone_kwargs": _kwargs_paths(cfg.backbone_kwargs)[0], "layer": cfg.layer,
            **({"preprocess": pre} if pre is not None else {})}


def _extract_inputs(cfg, source: Optional[str]) -> list:
    return _kwargs_paths(cfg.backbone_kwargs)[1]


def _extract(ctx: StageContext) -> dict:
    from mmlightning.features.extract import run_extraction

    cfg, shards = ctx.cfg, ctx.output("shard")["shards"]
    run_extraction(Path(shards), ctx.dir, backbone=cfg.backbone, backbone_kwargs=cfg.backbone_kwargs,
                   layer=cfg.layer, preprocess=cfg.sources[ctx.source].preprocess, batch_size=cfg.batch_size,
                   num_workers=cfg.num_workers, accelerator=cfg.accelerator, devices=cfg.devices)
    check_images(ctx.dir / "aggregates.pt", shards)
    return {"aggregates": ctx.dir / "aggregates.pt", "mean": ctx.dir / "mean.txt", "max": ctx.dir / "max.txt"}


# ------------------------------------------------------------------------------------------- bovw
def _bovw_settings(cfg, source: Optional[str]) -> dict:
    return {"k": cfg.bovw_k, "max_images": cfg.bovw_max_images, "seed": cfg.seed}


def _bovw(ctx: StageContext) -> dict:
    from mmlightning.features.bovw import fit_codebook
    from mmlightning.features.extract import run_extraction

    cfg, shards = ctx.cfg, ctx.output("shard")["shards"]
    codebook = fit_codebook(shards, ctx.dir / "codebook.pt", k=cfg.bovw_k, max_images=cfg.bovw_max_images,
                            seed=cfg.seed)
    feats = ctx.dir / "features"
    run_extraction(Path(shards), feats, backbone="bovw", backbone_kwargs={"codebook": str(codebook)},
                   batch_size=cfg.batch_size, num_workers=cfg.num_workers, accelerator="cpu", devices=1)
    check_images(feats / "aggregates.pt", shards)
    return {"codebook": codebook, "aggregates": feats / "aggregates.pt", "mean": feats / "mean.txt",
            "max": feats / "max.txt"}


def check_images(aggregates: Path, shards) -> None:
    """A stage that read no image at all is an error, not an empty table."""
    from mmlightning.features.aggregates import load_aggregates

    agg, meta = load_aggregates(aggregates)
    if len(agg) == 0:
        raise UserError(f"{shards}: no image could be read ({meta.get('n_skipped', 0)} samples skipped; "
                        f"the reasons are listed in {aggregates})")


# ------------------------------------------------------------------------------------------- evaluate
def visual_files(ctx: StageContext) -> dict[str, str]:
    """{'<source>/cnn-mean': path, '<source>/cnn-max': ..., '<source>/bovw': ...} in source order."""
    bovw = ctx.per_source("bovw")
    out: dict[str, str] = {}
    for name, ex in ctx.per_source("extract").items():
        out[f"{name}/cnn-mean"], out[f"{name}/cnn-max"] = str(ex["mean"]), str(ex["max"])
        if name in bovw:
            out[f"{name}/bovw"] = str(bovw[name]["mean"])
    return out


def _evaluate(ctx: StageContext) -> dict:
    from mmlightning.evaluation.report import write_reports
    from mmlightning.evaluation.systems import evaluate_systems

    ev, linguistic = ctx.cfg.evaluation, str(ctx.output("skipgram")["vectors"])
    visual = visual_files(ctx)
    aggregates = {name: str(ex["aggregates"]) for name, ex in ctx.per_source("extract").items()}
    ling, vis, benches = _load(ctx, linguistic, visual, list(ev.benchmarks))
    result = evaluate_systems(ling, vis, benches, alpha=ev.alpha, missing_visual=ev.missing_visual, n_boot=ev.n_boot,
                              seed=ev.seed, inputs={"linguistic": linguistic, "visual": visual})
    if "suite" in ctx.upstream:
        result["suite"] = ctx.output("suite")
    if ev.grounding and any(name.endswith("/cnn-mean") for name in visual):
        result["grounding"] = _grounding(ctx, linguistic, visual)
    if "protocol" in ctx.upstream:
        result["tuned"] = ctx.output("protocol")
    paths = write_reports(result, Path(ctx.cfg.reports))
    if ev.html_report:
        from mmlightning.evaluation.html import write_html_report

        shards = {name: str(out["shards"]) for name, out in ctx.per_source("shard").items()}
        paths.update(write_html_report(result, Path(ctx.cfg.reports), shards, aggregates))
    return {"result": result, "paths": {k: str(v) for k, v in paths.items()}}


def _load(ctx: StageContext, linguistic: str, visual: dict[str, str], sets: list[str]):
    """`load_inputs` of the stage outputs; an error about the stage's copy of your own vectors names your file."""
    from mmlightning.evaluation.systems import load_inputs

    try:
        return load_inputs(linguistic, visual, sets)
    except UserError as e:  # the stage's copy of your own vectors: name your file (benchmarks changed since)
        if ctx.cfg.linguistic and str(e).startswith(f"{linguistic}:"):
            raise UserError(f"linguistic: {ctx.cfg.linguistic} (copied to {linguistic}){str(e)[len(linguistic):]}") \
                from None
        raise


def _suite(ctx: StageContext) -> dict:
    """Every set of `suite` for every system (the report's suite table and concept categorisation), scored
    apart from Table 1 so that Figure 4 and Table 1 stay the paper's benchmarks."""
    from mmlightning.evaluation.systems import evaluate_systems

    ev, linguistic, visual = ctx.cfg.evaluation, str(ctx.output("skipgram")["vectors"]), visual_files(ctx)
    ling, vis, sets = _load(ctx, linguistic, visual, list(ev.suite))
    suite = evaluate_systems(ling, vis, sets, alpha=ev.alpha, missing_visual=ev.missing_visual, n_boot=ev.n_boot,
                             seed=ev.seed, relevant=False)
    return {k: suite[k] for k in ("settings", "systems", "sources", "table1", "categorisation")}


def _protocol(ctx: StageContext) -> dict:
    """The section "tuned on dev, reported on test" (evaluation.protocol) on the stage outputs."""
    from mmlightning.evaluation.protocol import run_protocol_files

    ev, linguistic = ctx.cfg.evaluation, str(ctx.output("skipgram")["vectors"])
    aggregates = {name: str(ex["aggregates"]) for name, ex in ctx.per_source("extract").items()}
    return run_protocol_files(linguistic, visual_files(ctx), aggregates, ev.source_fusion, ev.dispersion_gate,
                              ev.n_boot, ev.seed)


# ------------------------------------------------------------------------------------- mmskipgram
def _mmskipgram_settings(cfg, variant: Optional[str]) -> dict:
    return {**_skipgram_settings(cfg, None), "variant": variant, **asdict(cfg.mmskipgram[variant])}


def _mmskipgram(ctx: StageContext) -> dict:
    """MMSkip-gram (Lazaridou et al. 2015), one variant per stage (`mmskipgram:A`, `mmskipgram:B`: they can train
    at once), the visual vectors the mean of the sources' CNN-Mean (with `min_concreteness`, only the words rated
    at least that keep theirs)."""
    from dataclasses import replace

    from mmlightning.evaluation.concreteness import gate_visual, load_concreteness
    from mmlightning.evaluation.grounding import mean_visual
    from mmlightning.text.train import train_skipgram
    from mmlightning.vectors import load_vectors

    variant, mm = ctx.part, ctx.cfg.mmskipgram[ctx.part]
    visual = mean_visual({s: load_vectors(ex["mean"]) for s, ex in ctx.per_source("extract").items()})
    visual_file = ctx.dir / "visual_mean.txt"
    visual.save_word2vec(visual_file)
    vis = visual_file
    if mm.min_concreteness is not None:
        kept = gate_visual(visual, load_concreteness(), mm.min_concreteness, unrated="drop")
        vis = ctx.dir / f"visual_mean_concrete{mm.min_concreteness:g}.txt"
        kept.save_word2vec(vis)
        log.info("mmskipgram-%s: %d of %d pictured words rated >= %g keep their visual vector", variant,
                 len(kept), len(visual), mm.min_concreteness)
    cfg = replace(ctx.cfg.skipgram, visual_vectors=str(vis), visual_variant=variant, **mm.skipgram_fields())
    vectors = train_skipgram(cfg, ctx.dir / f"mmskipgram-{variant}", corpus=ctx.cfg.corpus, seed=ctx.cfg.seed,
                             cache_dir=str(ctx.root / "corpus_cache"))
    return {"visual": visual_file, "vectors": vectors}


def _grounding(ctx: StageContext, linguistic: str, visual: dict[str, str]) -> dict:
    """The grounding section (evaluation.grounding) on the stage outputs: CNN-Mean per source, MMSkip-gram."""
    from mmlightning.datasets import load_benchmark
    from mmlightning.evaluation.grounding import TEST_SETS, run_grounding
    from mmlightning.vectors import load_vectors

    words = set().union(*(load_benchmark(b).words() for b in ("men", *TEST_SETS)))
    means = {name.split("/")[0]: load_vectors(path) for name, path in visual.items() if name.endswith("/cnn-mean")}
    mm = {f"mmskipgram-{variant}": load_vectors(out["vectors"], restrict_to=words)
          for variant, out in ctx.per_source("mmskipgram").items()}
    try:
        return run_grounding(load_vectors(linguistic, restrict_to=words), means, mm, ctx.cfg.n_boot, ctx.cfg.seed)
    except UserError as e:   # e.g. a toy vocabulary with too few pictured words of MEN: the rest of the report stands
        log.warning("grounding section skipped: %s", e)
        return {"skipped": str(e)}


def _release(ctx: StageContext) -> dict:
    from mmlightning.pipeline.release import write_release

    cfg = ctx.cfg
    text = {"corpus": cfg.corpus, "skipgram": {**cfg.skipgram.key(), "seed": cfg.seed}}
    if cfg.linguistic:
        from mmlightning.pipeline.fingerprint import Fingerprints

        text = {"linguistic": {"file": Path(cfg.linguistic).name, **Fingerprints().file(cfg.linguistic)}}
    settings = {**text,
                "sources": {k: asdict(v) for k, v in cfg.sources.items()}, "backbone": cfg.backbone,
                "layer": cfg.layer, "backbone_kwargs": cfg.backbone_kwargs, "alpha": cfg.alpha, "centring": True,
                "seed": cfg.seed}
    return write_release(Path(cfg.reports) / "release", str(ctx.output("skipgram")["vectors"]),
                         ctx.per_source("extract"), alpha=cfg.alpha, settings=settings)


# cost: rough relative durations on the embedded default; they only order the ready stages of a parallel run
STAGES: tuple[StageDef, ...] = (
    StageDef("skipgram", reads=(), run=_skipgram, settings=_skipgram_settings, inputs=_skipgram_inputs,
             cost=4),
    StageDef("shard", reads=(), run=_shard, settings=_shard_settings, inputs=_shard_inputs, per_source=True),
    StageDef("extract", reads=("shard",), run=_extract, settings=_extract_settings, inputs=_extract_inputs,
             per_source=True, cost=3),
    StageDef("bovw", reads=("shard",), run=_bovw, settings=_bovw_settings, per_source=True,
             enabled=lambda cfg: cfg.bovw, cost=2),
    StageDef("mmskipgram", reads=("extract",), run=_mmskipgram, settings=_mmskipgram_settings,
             inputs=lambda cfg, variant: _skipgram_inputs(cfg, None), parts=lambda cfg: sorted(cfg.mmskipgram),
             enabled=lambda cfg: bool(cfg.mmskipgram) and not cfg.linguistic, cost=4),
    StageDef("suite", reads=("skipgram", "extract", "bovw"), run=_suite, cached=False, in_worker=True,
             enabled=lambda cfg: bool(cfg.suite), cost=1),
    StageDef("protocol", reads=("skipgram", "extract"), run=_protocol, cached=False, in_worker=True,
             enabled=lambda cfg: cfg.protocol, cost=0.5),
    StageDef("evaluate", reads=("skipgram", "shard", "extract", "bovw", "mmskipgram", "suite", "protocol"),
             run=_evaluate, cached=False, cost=1.5),
    StageDef("release", reads=("skipgram", "extract"), run=_release, cached=False, cost=0.2),
)

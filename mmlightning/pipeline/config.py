"""Typed settings of the `reproduce` job: one dataclass per concern, validated when constructed.

    cfg = ReproduceConfig(skipgram={"epochs": 1}, sources={"pics": {"source": "folder", "root": "imgs"}})
    cfg.skipgram.epochs, cfg.sources["pics"].n_per_word, cfg.extraction.backbone, cfg.evaluation.alpha

The field names are the keys of configs/reproduce.yaml (flat: backbone, alpha, ... at the top level;
`skipgram:` and each entry of `sources:` nested), and the defaults in code are that file's values, so
`reproduce` with no config runs the embedded default (tests/test_configs.py compares them). jsonargparse
builds these classes from YAML / the command line and checks the types; the values are checked here
(`__post_init__`), each bad one a one-line UserError before any stage runs.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Optional, Union

from mmlightning.errors import UserError
from mmlightning.text.train import SkipgramConfig  # noqa: F401 (the `skipgram:` block; defined beside train_skipgram)

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
MISSING_VISUAL = ("zero", "text")
SOURCE_FUSIONS = ("average", "concat")
FORCEABLE = ("skipgram", "shard", "extract", "bovw", "mmskipgram", "evaluate", "release")
MM_VARIANTS = ("A", "B")
IMAGE_WORDS = ("benchmarks", "labelled")
PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _at_least(where: str, value: Any, low: float, what: str = "") -> None:
    if value < low:
        raise UserError(f"{where}: {value} must be >= {low:g}{what}")


def _coerce(cls, value, where: str):
    """A dict (Python API, old YAML) becomes `cls`; an instance passes; anything else is a UserError."""
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        known = {f.name for f in fields(cls)}
        bad = sorted(set(value) - known)
        if bad:
            raise UserError(f"{where}: unknown key(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
        return cls(**value)
    raise UserError(f"{where}: expected a mapping of settings, got {value!r}")


@dataclass
class SourceConfig:
    """One image source (mmlightning.images.write_shards.shard) and the preprocessing of its CNN features.

    Args:
        source: tuxpaint, openclipart, imagenet, esp or folder.
        root: Root folder of the source (needed for imagenet, esp, folder).
        words: Concept words: labelled (every word the source labels, plus the benchmarks'), a word-list file or benchmark; default: `image_words`.
        n_per_word: N, the most images selected per word.
        max_side: Longest side, in pixels, of the stored images.
        samples_per_shard: Images per tar shard.
        min_shards: At least this many shards (smaller ones if needed): set it to devices x loader workers.
        prefix: Shard file name prefix.
        options: Source options, e.g. {subtree: true} (see `shard --help`).
        workers: Threads decoding / rendering images (not part of the cache key).
        preprocess: Preprocessing scheme of the CNN features (default: the backbone's own; e.g. esp).

    Checked by ReproduceConfig (`check`), so that a message names the source (`sources.<name>.<key>`).
    """

    source: str = ""
    root: Optional[str] = None
    words: Optional[str] = None
    n_per_word: int = 20
    max_side: int = 512
    samples_per_shard: int = 256
    min_shards: int = 1
    prefix: str = "shard"
    options: Optional[dict] = None
    workers: int = 2
    preprocess: Optional[str] = None

    def check(self, where: str) -> None:
        """One-line UserError for a bad value; `where` names this source in the message."""
        from mmlightning.images.sources import SOURCES

        if not self.source:
            raise UserError(f"{where}: needs at least `source:` ({', '.join(SOURCES)})")
        if self.source not in SOURCES:
            raise UserError(f"{where}.source: unknown image source {self.source!r}; choose one of {', '.join(SOURCES)}")
        _at_least(f"{where}.n_per_word", self.n_per_word, 1)
        _at_least(f"{where}.samples_per_shard", self.samples_per_shard, 1)
        _at_least(f"{where}.min_shards", self.min_shards, 1)
        _at_least(f"{where}.max_side", self.max_side, 16)
        _at_least(f"{where}.workers", self.workers, 1)
        self._check_words(where)
        if self.preprocess is not None:
            from mmlightning.images.preprocess import get_scheme

            get_scheme(self.preprocess)

    def _check_words(self, where: str) -> None:
        """`words` is None, labelled, a shipped benchmark or an existing file (a typo fails now, not at shard)."""
        from pathlib import Path

        from mmlightning.datasets import SHIPPED

        words = self.words
        if words is None or words == "labelled" or words in SHIPPED or (isinstance(words, str) and Path(words).exists()):
            return
        raise UserError(f"{where}.words: {words!r} is neither labelled, a shipped benchmark ({', '.join(SHIPPED)}) "
                        f"nor an existing word-list file")

    def shard_args(self) -> dict:
        """Arguments of `shard` (besides output_dir, seed and benchmarks)."""
        return {k: v for k, v in asdict(self).items() if k != "preprocess"}


def default_sources() -> dict[str, SourceConfig]:
    """The embedded default's two sources, as configs/reproduce.yaml spells them."""
    return {"tuxpaint": SourceConfig("tuxpaint", n_per_word=50, options={"description": "short", "subtree": True}),
            "openclipart": SourceConfig("openclipart", n_per_word=25, options={"max_per_group": 10})}


@dataclass
class ExtractionConfig:
    """CNN feature extraction (mmlightning.features.extract.run_extraction) and the BOVW baseline."""

    backbone: str = "efficientnet_lite0"
    backbone_kwargs: Optional[dict] = None
    layer: Optional[str] = None
    batch_size: int = 4
    num_workers: int = 0
    accelerator: str = "auto"
    devices: Union[int, str] = 1
    bovw: bool = True
    bovw_k: int = 100
    bovw_max_images: int = 1000

    def __post_init__(self):
        _at_least("batch_size", self.batch_size, 1)
        _at_least("num_workers", self.num_workers, 0)
        _at_least("bovw_k", self.bovw_k, 2)
        _at_least("bovw_max_images", self.bovw_max_images, 1)
        if self.accelerator not in ACCELERATORS:
            raise UserError(f"accelerator: {self.accelerator!r} is not one of {', '.join(ACCELERATORS)}")
        if not (self.devices == "auto" or (isinstance(self.devices, int) and self.devices >= 1)):
            raise UserError(f"devices: {self.devices!r} must be a number >= 1 or auto")


@dataclass
class EvaluationConfig:
    """Relatedness evaluation (mmlightning.evaluation.systems.evaluate_systems)."""

    benchmarks: list[str] = field(default_factory=lambda: ["ws353", "men"])
    suite: list[str] = field(default_factory=lambda: ["all"])
    alpha: float = 0.5
    missing_visual: str = "zero"
    n_boot: int = 1000
    seed: int = 0
    protocol: bool = True
    source_fusion: list[str] = field(default_factory=lambda: list(SOURCE_FUSIONS))
    dispersion_gate: bool = True
    html_report: bool = True
    grounding: bool = True

    def __post_init__(self):
        bad = [f for f in self.source_fusion if f not in SOURCE_FUSIONS]
        if bad or not self.source_fusion:
            raise UserError(f"source_fusion: {bad or self.source_fusion} is not a non-empty list of "
                            f"{', '.join(SOURCE_FUSIONS)}")
        if not self.benchmarks:
            raise UserError("benchmarks: none given; e.g. benchmarks: [ws353, men]")
        if not 0.0 <= self.alpha <= 1.0:
            raise UserError(f"alpha: {self.alpha} is outside [0, 1]")
        if self.missing_visual not in MISSING_VISUAL:
            raise UserError(f"missing_visual: {self.missing_visual!r} is not one of {', '.join(MISSING_VISUAL)}")
        _at_least("n_boot", self.n_boot, 0)


@dataclass
class ReproduceConfig:
    """The whole job, keyed as configs/reproduce.yaml.

    Args:
        checkpoints: Folder of the cached stage outputs (reused between runs; movable, usable from any folder).
        reports: Folder for Table 1 / Figure 4 / Table 2 (Markdown, JSON, PNG) and the release.
        corpus: Text corpus for skip-gram: gcide (Debian dict-gcide), text8, or paths (.txt, .txt.gz, folders, BNC XML).
        linguistic: Your own text vectors (word2vec text or binary, or a .npy matrix + its .vocab.txt word list) used instead of training skip-gram; keyed by content.
        unsafe_gensim_pickle: Also read `linguistic:` in gensim's native .kv format; unpickles: only for files you trust.
        skipgram: Skip-gram settings (epochs, dim, window, negative, sample, min_count, num_workers, ...).
        sources: Image sources by name, each {source, root, n_per_word, options, ..., preprocess}.
        benchmarks: Benchmarks of Table 1 and Figure 4, whose vocabulary selects the concept words (the paper's: ws353, men).
        image_words: Words that get images: benchmarks (their vocabulary, the paper's) or labelled (every word a source labels, plus the benchmarks'; more visual vectors for MMSkip-gram); a source's own `words:` wins.
        suite: Further sets scored for every system in the report's suite table (relatedness and concept
            categorisation; "all" = every shipped set; [] = none); they select no images.
        backbone: CNN backbone for the visual features (efficientnet_lite0, alexnet1512, torchvision names).
        backbone_kwargs: Backbone options, e.g. {checkpoint: path} for alexnet1512.
        layer: Feature layer of the backbone (fc6, fc7 for alexnet1512; default: the backbone's own).
        bovw: Also compute the bag-of-visual-words baseline.
        bovw_k: Size of the BOVW codebook (k-means clusters).
        bovw_max_images: Images sampled per source to fit the BOVW codebook.
        alpha: Weight of the linguistic part in Eq. 1 (Table 1 and the release).
        missing_visual: Multi-modal score of a pair with an imageless word: zero (Eq. 1) or text (text cosine).
        n_boot: Bootstrap resamples for the 95% confidence intervals.
        protocol: Add the section "tuned on dev, reported on test" (MEN dev/test split; WS353, SimLex-999, ... test-only).
        source_fusion: How the protocol fuses several image sources per word: average and/or concat.
        dispersion_gate: Let the protocol gate the visual part of words with dispersed images (threshold chosen on dev).
        html_report: Also write reports/index.html (tables, Figure 4, Table 2 with image strips) and a page per source.
        grounding: Add the section "grounding the words without pictures" (imagined visual vectors, a concreteness
            gate, MMSkip-gram; chosen on MEN dev, reported on MEN test, SimLex-999 and WS353, by concreteness quartile).
        mmskipgram: MMSkip-gram variants to train after extraction: a list (A, B: the paper's settings; [] for
            none) or {variant: {weight, margin, negatives, map_l2, epochs, min_concreteness}}; visual vectors = the
            mean of the sources' CNN-Mean; their text vectors join the grounding section.
        batch_size: Images per batch in feature extraction (small is fastest on a 2-core CPU; 256 on GPUs).
        num_workers: Data-loading worker processes in feature extraction (0 on a 2-core CPU; 8 on GPUs).
        accelerator: Lightning accelerator for extraction (auto, cpu, gpu, cuda, mps).
        devices: Devices for extraction (a number or auto; several run DDP).
        seed: Seed of every stage (image sampling, skip-gram, k-means, bootstrap).
        jobs: Stages computed at once, each in a worker process (auto: 2 on a machine with 2+ cores; 1: one after
            another in this process); the results do not depend on it (mmlightning.pipeline.parallel).
        force: Stages to recompute even if cached (with their dependants): skipgram, shard, extract, bovw.
    """

    checkpoints: str = "checkpoints"
    reports: str = "reports"
    corpus: Union[list[str], str] = "gcide"
    linguistic: Optional[str] = None
    unsafe_gensim_pickle: bool = False
    skipgram: SkipgramConfig = field(default_factory=SkipgramConfig)
    sources: dict[str, SourceConfig] = field(default_factory=default_sources)
    benchmarks: list[str] = field(default_factory=lambda: ["ws353", "men"])
    image_words: str = "benchmarks"
    suite: list[str] = field(default_factory=lambda: ["all"])
    backbone: str = "efficientnet_lite0"
    backbone_kwargs: Optional[dict] = None
    layer: Optional[str] = None
    bovw: bool = True
    bovw_k: int = 100
    bovw_max_images: int = 1000
    alpha: float = 0.5
    missing_visual: str = "zero"
    n_boot: int = 1000
    protocol: bool = True
    source_fusion: list[str] = field(default_factory=lambda: list(SOURCE_FUSIONS))
    dispersion_gate: bool = True
    html_report: bool = True
    grounding: bool = True
    mmskipgram: Union[list[str], dict[str, Optional[MMSkipgramConfig]]] = field(
        default_factory=lambda: {v: replace(c) for v, c in DEV_CHOSEN.items()})
    batch_size: int = 4
    num_workers: int = 0
    accelerator: str = "auto"
    devices: Union[int, str] = 1
    seed: int = 0
    jobs: Union[int, str] = "auto"
    force: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.skipgram = _coerce(SkipgramConfig, self.skipgram if self.skipgram is not None else {}, "skipgram")
        if not self.sources:
            raise UserError("sources: no image source given (sources: {name: {source: ..., n_per_word: ...}})")
        if not isinstance(self.sources, dict):
            raise UserError(f"sources: expected a mapping name -> settings, got {self.sources!r}")
        if self.image_words not in IMAGE_WORDS:
            raise UserError(f"{self.image_words!r} is not one of {', '.join(IMAGE_WORDS)}", argument="image_words")
        self.sources = {name: _source(name, spec, self.image_words) for name, spec in self.sources.items()}
        if not self.corpus and self.linguistic is None:
            raise UserError("corpus: none given; e.g. corpus: gcide, or a list of text files / folders")
        if self.linguistic is not None:
            from pathlib import Path

            if not Path(self.linguistic).is_file():
                raise UserError(f"linguistic: {self.linguistic}: no such file; give word2vec text/binary or gensim "
                                ".kv vectors, or drop the key to train skip-gram")
        self.mmskipgram = _mmskipgram(self.mmskipgram if self.mmskipgram is not None else [])
        bad = [f for f in self.force if f not in FORCEABLE]
        if bad:
            raise UserError(f"force: unknown stage(s) {', '.join(bad)}; stages are {', '.join(FORCEABLE)}")
        if not (self.jobs == "auto" or (isinstance(self.jobs, int) and not isinstance(self.jobs, bool)
                                         and self.jobs >= 1)):
            raise UserError(f"{self.jobs!r} must be a number >= 1 or auto", argument="jobs")
        _ = (self.extraction, self.evaluation)  # builds (validates) both now

    @property
    def corpus_list(self) -> list[str]:
        return [self.corpus] if isinstance(self.corpus, str) else list(self.corpus)

    @property
    def extraction(self) -> ExtractionConfig:
        return ExtractionConfig(**{f.name: getattr(self, f.name) for f in fields(ExtractionConfig)})

    @property
    def evaluation(self) -> EvaluationConfig:
        return EvaluationConfig(**{f.name: getattr(self, f.name) for f in fields(EvaluationConfig)})


@dataclass
class MMSkipgramConfig:
    """One MMSkip-gram variant's visual settings (its text settings are the `skipgram:` block's).

    Args:
        weight: Weight of the visual term (the paper adds the two terms: 1).
        margin: Margin of the max-margin term (the paper's 0.5).
        negatives: Visual negatives per occurrence (the paper's: A 20, B 5).
        map_l2: Variant B's L2 penalty on the map, per visual occurrence (the paper's B: 1e-4).
        epochs: Passes over the corpus (None: the skipgram block's).
        min_concreteness: Only words rated at least this (Brysbaert et al. 2014, 1-5) keep a visual vector, as the
            paper kept concrete words (None: every pictured word).
    """

    weight: float = 1.0
    margin: float = 0.5
    negatives: int = 20
    map_l2: float = 0.0
    epochs: Optional[int] = None
    min_concreteness: Optional[float] = None

    def check(self, where: str) -> None:
        for name, low in (("weight", 0.0), ("margin", 0.0)):
            if not getattr(self, name) > low:
                raise UserError(f"{where}.{name}: {getattr(self, name)} must be > 0")
        _at_least(f"{where}.negatives", self.negatives, 1)
        _at_least(f"{where}.map_l2", self.map_l2, 0)
        if self.epochs is not None:
            _at_least(f"{where}.epochs", self.epochs, 1)
        if self.min_concreteness is not None and not 1 <= self.min_concreteness <= 5:
            raise UserError(f"{where}.min_concreteness: {self.min_concreteness} is outside the norms' 1-5 scale")

    def skipgram_fields(self) -> dict:
        """The SkipgramConfig fields these settings set (epochs only when given)."""
        out = {"visual_weight": self.weight, "visual_margin": self.margin, "visual_negatives": self.negatives,
               "visual_map_l2": self.map_l2}
        return out if self.epochs is None else {**out, "epochs": self.epochs}


# MMSkip-gram's settings chosen on MEN dev (scripts/tune_mmskipgram.py, docs/figures/mmskipgram_dev_grid.json)
DEV_CHOSEN = {"A": MMSkipgramConfig(weight=0.3, margin=0.5, negatives=5),
              "B": MMSkipgramConfig(weight=1.0, margin=0.5, negatives=20)}


def paper_mmskipgram(variant: str) -> MMSkipgramConfig:
    """The paper's settings of a variant (Lazaridou et al. 2015, Section 4): A k 20; B k 5, lambda 1e-4; margin 0.5."""
    from mmlightning.text.mmskipgram import PAPER

    p = PAPER[variant]
    return MMSkipgramConfig(margin=p["margin"], negatives=p["negatives"], map_l2=p["map_l2"])


def _mmskipgram(spec) -> dict[str, MMSkipgramConfig]:
    """`[A, B]` (the paper's settings) or `{A: {weight: ...}, B: {...}}` -> {variant: MMSkipgramConfig}."""
    if isinstance(spec, (list, tuple)):
        spec = {v: None for v in spec}
    if not isinstance(spec, dict):
        raise UserError(f"mmskipgram: expected a list of variants or a mapping variant -> settings, got {spec!r}")
    bad = [v for v in spec if v not in MM_VARIANTS]
    if bad:
        raise UserError(f"mmskipgram: unknown variant(s) {', '.join(map(str, bad))}; variants are A, B")
    out = {}
    for v, settings in spec.items():
        mm = paper_mmskipgram(v) if settings is None else _coerce(MMSkipgramConfig, settings, f"mmskipgram.{v}")
        mm.check(f"mmskipgram.{v}")
        out[v] = mm
    return out


def _source(name: str, spec, image_words: str = "benchmarks") -> SourceConfig:
    if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name) or name in (".", ".."):
        raise UserError(f"sources: {name!r} is not a plain name (it names the source's folders and files); use "
                        f"letters, digits, '-', '_' or '.', e.g. imagenet_train")
    where = f"sources.{name}"
    if isinstance(spec, dict) and not spec.get("source"):
        raise UserError(f"{where}: needs at least `source:` (tuxpaint, openclipart, imagenet, esp, folder)")
    src = _coerce(SourceConfig, spec, where)
    if image_words == "labelled" and src.words is None:  # a copy: the caller's SourceConfig stays as given
        src = replace(src, words="labelled")
    src.check(where)
    return src

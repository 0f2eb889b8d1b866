"""Training skip-gram from Python: typed settings passed whole, one record per output folder.

    from mmlightning.text.train import SkipgramConfig, train_skipgram
    cfg = SkipgramConfig(epochs=5, dim=100)                    # word2vec's settings are the defaults
    vectors_txt = train_skipgram(cfg, "checkpoints/skipgram", corpus=["gcide"], seed=1)

`train_skipgram` is the fit of configs/skipgram.yaml (`SkipGram` + `SkipGramDataModule` + a Lightning
Trainer with `last.ckpt` checkpoints). Its folder holds one record (`record.json`, the
`mmlightning.resumable` mechanism every resumed folder uses): a finished run with the same settings and
corpus is reused, an interrupted one resumes from `<output_dir>/ckpt/last.ckpt`, and a folder of other
settings is refused in one line. `reproduce`'s stage folder already holds the stage's record, so the
stage calls it with `record=False`.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from mmlightning.errors import UserError
from mmlightning.text.mmskipgram import PAPER_MARGIN, PAPER_NEGATIVES, check_settings, file_digest
from mmlightning.resumable import ResumableOutput

PAIR_MODES = ("auto", "native", "host", "device")


def _at_least(argument: str, value: Any, low: float) -> None:
    if value < low:
        raise UserError(f"{value} must be >= {low:g}", argument=argument)


@dataclass
class SkipgramConfig:
    """Skip-gram settings (the `skipgram:` block of configs/reproduce.yaml).

    Args:
        epochs: Passes over the corpus.
        dim: Vector dimension.
        window: Largest context window (words each side).
        negative: Negative samples per pair.
        sample: Sub-sampling threshold of frequent words.
        min_count: Words rarer than this are dropped.
        num_workers: Data workers; 0 = one process, bit-for-bit reproducible (Hogwild workers are faster, not bitwise).
        lr: Initial learning rate.
        min_lr: Final learning rate.
        chunk_words: Words per training chunk.
        compile: torch.compile the update step.
        pairs: Where pairs are made and trained: auto (native where the C kernel builds, else host: the same
            default as `fit`), native (the compiled kernel), host (numpy pairs + torch update; several times slower),
            device (pairs made by torch on the trainer's device).
        visual_vectors: MMSkip-gram's visual vectors file (None: text-only skip-gram); see mmskipgram.py.
        visual_variant: A (word vector vs PCA-reduced visual vectors) or B (a word -> visual map learned jointly).
        visual_margin: Margin of the max-margin term (the paper's 0.5).
        visual_negatives: Visual negatives per occurrence (the paper's: A 20, B 5).
        visual_weight: Weight of the visual term.
        visual_map_l2: Variant B's L2 penalty on the map, per visual occurrence (the paper's B: 1e-4).
        model_kwargs: Further SkipGram arguments (e.g. hogwild_threads).
        progress_bar: Show the training progress bar (not part of the cache key).
        relatedness: Benchmarks scored after every epoch into the stage's metrics.csv (not part of the cache key).
    """

    epochs: int = 5
    dim: int = 100
    window: int = 5
    negative: int = 5
    sample: float = 0.001
    min_count: int = 5
    num_workers: int = 0
    lr: float = 0.025
    min_lr: float = 0.0001
    chunk_words: int = 16384
    compile: bool = True
    pairs: str = "auto"
    visual_vectors: Optional[str] = None
    visual_variant: str = "B"
    visual_margin: float = PAPER_MARGIN
    visual_negatives: int = PAPER_NEGATIVES
    visual_weight: float = 1.0
    visual_map_l2: float = 0.0
    model_kwargs: dict = field(default_factory=dict)
    progress_bar: bool = True
    relatedness: list[str] = field(default_factory=lambda: ["ws353", "men", "simlex999"])

    def __post_init__(self):
        for name in ("epochs", "dim", "window", "min_count", "chunk_words"):
            _at_least(f"skipgram.{name}", getattr(self, name), 1)
        for name in ("negative", "num_workers", "sample"):
            _at_least(f"skipgram.{name}", getattr(self, name), 0)
        if not self.lr > 0:
            raise UserError(f"must be > 0, got {self.lr}", argument="skipgram.lr")
        if not 0 <= self.min_lr <= self.lr:
            raise UserError(f"must be in [0, lr = {self.lr}], got {self.min_lr}", argument="skipgram.min_lr")
        if self.pairs not in PAIR_MODES:
            raise UserError(f"must be {', '.join(PAIR_MODES)}, got {self.pairs!r}", argument="skipgram.pairs")
        if self.visual_vectors is not None:
            check_settings(self.visual_variant, self.visual_margin, self.visual_negatives, self.visual_weight,
                           prefix="skipgram.", map_l2=self.visual_map_l2)

    def resolved_pairs(self) -> str:
        """`pairs` made concrete on the CPU (auto: native where the kernel builds, else host)."""
        from mmlightning.text.native import resolve_pairs   # without Lightning: planning a run stays light

        return resolve_pairs(self.pairs, "cpu", argument="skipgram.pairs")

    def key(self) -> dict:
        """The settings the vectors depend on (the progress bar and the per-epoch scoring do not).

        The pair mode enters as the one that runs (auto resolved); host is left out so that caches made
        before the option stay valid. The visual settings enter only with visual vectors, the file by the
        SHA-256 of its bytes (not its path).
        """
        key = {k: v for k, v in asdict(self).items() if k not in ("progress_bar", "relatedness")}
        if self.visual_vectors is None:
            key = {k: v for k, v in key.items() if not k.startswith("visual_")}
        else:
            key["visual_vectors"] = {"sha256": file_digest(self.visual_vectors)}
            if not self.visual_map_l2:  # no penalty: the key of runs made before the option
                key.pop("visual_map_l2")
        key["pairs"] = self.resolved_pairs()
        if key["pairs"] == "host":
            key.pop("pairs")
        return key


def train_skipgram(cfg: SkipgramConfig, output_dir: str | os.PathLike = "checkpoints/skipgram",
                   corpus: list[str] | str = "gcide", seed: int = 1,
                   cache_dir: str | os.PathLike = "checkpoints/corpus_cache", accelerator: str = "cpu",
                   devices: int | str = 1, strategy: str = "auto", callbacks: list | None = None,
                   record: bool = True) -> Path:
    """Train (or resume, or reuse) skip-gram vectors; returns the path of `<output_dir>/vectors.txt`.

    `corpus` and `seed` are the data's (a list of files, folders or names such as "gcide"); `accelerator`,
    `devices`, `strategy` the Trainer's (pairs are made on the device off the CPU). With `record`, the
    folder's `record.json` decides reuse / resume / refusal; without, the caller guarantees the settings
    (an interrupted run in the folder is resumed).
    """
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger

    from mmlightning.text.data import SkipGramDataModule, resolve_pairs
    from mmlightning.text.skipgram import SkipGram

    output_dir = Path(output_dir)
    pairs = resolve_pairs(cfg.pairs, "cpu" if accelerator == "cpu" else "accelerator", argument="skipgram.pairs")
    vectors, last = output_dir / "vectors.txt", output_dir / "ckpt" / "last.ckpt"
    run = ResumableOutput(output_dir, {"skipgram": {**cfg.key(), "pairs": pairs}, "corpus": corpus, "seed": seed},
                          what="skip-gram run")
    if record:
        if run.done() and vectors.is_file():
            return vectors
        if not run.started() and last.is_file():
            raise UserError(f"{last}: a run with other settings is in {output_dir}; use another output_dir or delete it")
        run.begin()
    dm = SkipGramDataModule(corpus=corpus, cache_dir=str(cache_dir), min_count=cfg.min_count, window=cfg.window,
                            negative=cfg.negative, sample=cfg.sample, chunk_words=cfg.chunk_words,
                            num_workers=cfg.num_workers, seed=seed, pairs=pairs)
    visual = {k: getattr(cfg, k) for k in ("visual_vectors", "visual_variant", "visual_margin", "visual_negatives",
                                           "visual_weight", "visual_map_l2")} if cfg.visual_vectors else {}
    model = SkipGram(dim=cfg.dim, lr=cfg.lr, min_lr=cfg.min_lr, seed=seed, output_dir=str(output_dir),
                     compile=cfg.compile, **visual, **cfg.model_kwargs)
    trainer = pl.Trainer(max_epochs=cfg.epochs, accelerator=accelerator, devices=devices, strategy=strategy,
                         default_root_dir=str(output_dir), logger=CSVLogger(str(output_dir), name="logs"),
                         callbacks=[ModelCheckpoint(dirpath=str(last.parent), save_last=True, save_top_k=1,
                                                    enable_version_counter=False),  # last.ckpt: always the latest
                                    *(callbacks or [])],
                         enable_model_summary=False, enable_progress_bar=cfg.progress_bar, log_every_n_steps=1)
    trainer.fit(model, datamodule=dm, ckpt_path=str(last) if last.is_file() else None)
    if record and trainer.global_rank == 0 and trainer.current_epoch >= cfg.epochs:
        run.finish({"vectors": "vectors.txt", "vocab": "vocab.tsv"})
    return vectors

"""mmlightning: multi-modal word semantics (Kiela & Bottou, EMNLP 2014) with PyTorch Lightning.

Library modules (vectors I/O, fusion, relatedness, image sources, CNN backbones, BOVW) are plain
Python/torch; the training and extraction loops are LightningModules driven by `python -m mmlightning`.
"""

__version__ = "0.1.0"


def _quiet_third_party() -> None:
    """Drop Lightning's advertising tips and one torch deprecation it triggers; keep every other message."""
    import logging
    import warnings

    class _NoTips(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not str(record.msg).startswith("💡 Tip")

    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_NoTips())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")


_quiet_third_party()

"""mmlightning: multi-modal word semantics (Kiela & Bottou, EMNLP 2014) with PyTorch Lightning.

Library modules (vectors I/O, fusion, relatedness, image sources, CNN backbones, BOVW) are plain
Python/torch; the training and extraction loops are LightningModules driven by `python -m mmlightning`.
"""

__version__ = "0.1.0"

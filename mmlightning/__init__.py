"""mmlightning: multi-modal word semantics (Kiela & Bottou, EMNLP 2014) with PyTorch Lightning.

    import mmlightning as mm
    text = mm.load_vectors("vectors.txt")
    grounded = mm.fuse(text, mm.extract_visual("photos/", "out/visual")["cnn-mean"])
    mm.evaluate(grounded, ["men", "ws353"])       # [{"benchmark": "men", "rho": ..., ...}, ...]

The public API (`mmlightning/api.py`) is what this module exports; everything else is reachable by its
module path but may change. Names resolve on first use, so `import mmlightning` stays light (no torch).
The command line is `python -m mmlightning` (`mmlightning/cli.py`).
"""

__version__ = "0.1.0"

__all__ = ["KeyedVectors", "load_vectors", "save_vectors", "as_keyed_vectors", "fuse", "evaluate",
           "train_skipgram", "write_shards", "extract_visual", "UserError"]


def __getattr__(name: str):
    if name == "UserError":
        from mmlightning.errors import UserError
        return UserError
    if name in __all__:
        from mmlightning import api
        return getattr(api, name)
    raise AttributeError(f"module 'mmlightning' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)

"""The `export` command: word2vec vectors (and the vocabulary) from a skip-gram checkpoint.

    python -m mmlightning export checkpoints/skipgram/ckpt/last.ckpt
    python -m mmlightning export run.ckpt --output vectors.bin --binary true

The checkpoint carries its vocabulary (words and counts), so the corpus is not needed. It is read with
`torch.load(weights_only=True)` (`mmlightning.checkpoints`): a file holding code is refused unrun. Writes
are atomic; gensim's `KeyedVectors.load_word2vec_format` reads the result.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mmlightning.checkpoints import load_weights
from mmlightning.errors import UserError
from mmlightning.vectors import KeyedVectors


def load_checkpoint_vectors(checkpoint: str | Path) -> tuple[KeyedVectors, np.ndarray]:
    """(input vectors as KeyedVectors, counts int64 (V,)) from a SkipGram checkpoint file."""
    path = Path(checkpoint)
    ckpt = load_weights(path)  # weights_only=True: plain data only, never code from the file
    info = ckpt.get("skipgram") if isinstance(ckpt, dict) else None
    syn0 = ckpt.get("state_dict", {}).get("syn0") if isinstance(ckpt, dict) else None
    if info is None or syn0 is None:
        raise UserError(f"{path}: not a SkipGram checkpoint (no vocabulary or syn0 in it)")
    words = list(info["words"])
    if syn0.shape[0] != len(words):
        raise UserError(f"{path}: syn0 has {syn0.shape[0]} rows but the vocabulary {len(words)} words")
    return KeyedVectors(words, syn0.float().numpy()), np.asarray(info["counts"], dtype=np.int64)


def export(checkpoint: str, output: str | None = None, binary: bool = False, vocab: bool = True) -> str:
    """Re-export word2vec vectors from a skip-gram checkpoint.

    Args:
        checkpoint: a checkpoint written while fitting mmlightning.text.skipgram.SkipGram.
        output: the vectors file to write (default: vectors.txt beside the checkpoint's folder, i.e.
            checkpoints/skipgram/vectors.txt for checkpoints/skipgram/ckpt/last.ckpt).
        binary: write word2vec binary instead of text.
        vocab: also write vocab.tsv (word<TAB>count) beside the vectors.
    """
    from mmlightning.atomic import write_text

    kv, counts = load_checkpoint_vectors(checkpoint)
    out = Path(output) if output else Path(checkpoint).resolve().parent.parent / "vectors.txt"
    kv.save_word2vec(out, binary=binary)
    if vocab:
        write_text(out.parent / "vocab.tsv", "".join(f"{w}\t{int(c)}\n" for w, c in zip(kv.index_to_key, counts)))
    print(f"wrote {out} ({len(kv)} words x {kv.vector_size})")
    return str(out)

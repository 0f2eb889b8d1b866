"""Tiny stand-ins of the paper's data, laid out exactly as the real distributions unpack.

    from standins import build_standins, paper_command
    paths = build_standins(tmp_path / "data")       # ~2 s; every path configs/reproduce_paper.yaml asks for
    cmd = paper_command(paths, tmp_path / "out")     # `reproduce --config configs/reproduce_paper.yaml` + overrides

    python tests/standins.py /tmp/paper-data         # build them and print the command line

What is built (synthetic pixels and text, real layouts and real WordNet ids):
- `imagenet/train/<wnid>/<wnid>_<i>.JPEG` for a few ILSVRC-style synsets whose WordNet ancestors are
  MEN / WS353 words (tabby -> cat, tiger -> animal, Chihuahua -> dog, sports car -> car, ...), plus
  `imagenet/wordnet.is_a.txt` (`parent child` wnids) and `imagenet/words.txt` (`wnid<TAB>lemma, lemma`)
  derived from WordNet 3.0 for those synsets and every ancestor, as ImageNet ships them;
- `ESPGame100k/originals/<n>.jpg`, `thumbnails/<n>.jpg` and `labels/<n>.jpg.desc` (one tag per line,
  plural and capitalised tags included, as the real tags are);
- `text8`: one line of space-separated lower-case words, no newline (text8's own form);
- `BNC/Texts/A/A0/A0{0,1}.xml`: BNC XML edition documents (`<bncDoc>`, `<teiHeader>`, `<wtext>`, `<p>`,
  `<s n=..>` sentences of `<w c5= hw= pos=>` words and `<c>` punctuation);
- `cnn1512/last.ckpt`: a checkpoint of `fit --config configs/cnn1512.yaml`'s module (CNN1512, 1512 classes,
  tiny conv width and FC dims), in the Lightning format `load_network` reads.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PAPER_CONFIG = ROOT / "configs" / "reproduce_paper.yaml"

# wnid -> (what it is, a MEN / WS353 word above it); real WordNet 3.0 noun offsets
IMAGENET = {
    "n02123045": "tabby (cat)",
    "n02129604": "tiger (animal)",
    "n02085620": "Chihuahua (dog)",
    "n04285008": "sports car (car)",
    "n04468005": "train",
    "n07920052": "espresso (coffee)",
    "n07684084": "French loaf (bread)",
    "n07753592": "banana (food)",
}
# ESP Game images: the tags of each (noisy on purpose: plurals, capitals, a blank line)
ESP_TAGS = [
    "water\nriver\ntrees\ngreen\n", "ocean\nsea\nwater\nblue\n", "beach\nSand\nsea\n\n", "sun\nsky\nclouds\n",
    "coffee\ncups\nbrown\n", "bread\nfood\ntable\n", "dogs\ngrass\n", "cat\nwhite\n", "cars\nroad\n",
    "river\nwater\nboat\n", "sea\nbeach\nsun\n", "dog\ncat\nanimals\n", "tiger\nCats\ngrass\nfeline\n",
    "train\ncars\nvehicle\n", "automobile\ncar\nroad\n", "fruit\nfood\nbananas\n", "dog\ncanine\ntiger\n",
]
# (word, head word = lemma, C5 tag, simple POS), as in the BNC XML edition's <w> elements
BNC_SENTENCES = [
    [("the", "the", "AT0", "ART"), ("dog", "dog", "NN1", "SUBST"), ("chased", "chase", "VVD", "VERB"),
     ("the", "the", "AT0", "ART"), ("cats", "cat", "NN2", "SUBST")],
    [("a", "a", "AT0", "ART"), ("train", "train", "NN1", "SUBST"), ("is", "be", "VBZ", "VERB"),
     ("not", "not", "XX0", "ADV"), ("a", "a", "AT0", "ART"), ("car", "car", "NN1", "SUBST")],
    [("the", "the", "AT0", "ART"), ("river", "river", "NN1", "SUBST"), ("runs", "run", "VVZ", "VERB"),
     ("to", "to", "PRP", "PREP"), ("the", "the", "AT0", "ART"), ("sea", "sea", "NN1", "SUBST")],
]


def jpeg(path: Path, rng: np.random.Generator, hue: int, size=(96, 72)) -> None:
    """A small synthetic photo-like JPEG: noise plus a coloured block whose colour depends on `hue`."""
    a = rng.integers(0, 80, (size[1], size[0], 3), dtype=np.uint8)
    a[size[1] // 4: 3 * size[1] // 4, size[0] // 4: 3 * size[0] // 4, hue % 3] = 200 + 7 * (hue % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, format="JPEG", quality=85)


def wordnet_hierarchy(wnids) -> tuple[str, str]:
    """(wordnet.is_a.txt, words.txt) for `wnids` and all their WordNet ancestors, in ImageNet's formats."""
    from mmlightning.images.wordnet import hypernyms, wnid, wordnet

    wn = wordnet()
    edges, names, stack = set(), {}, [wn.synset_from_pos_and_offset("n", int(w[1:])) for w in wnids]
    while stack:
        s = stack.pop()
        if wnid(s) in names:
            continue
        names[wnid(s)] = ", ".join(l.name().replace("_", " ") for l in s.lemmas())
        for parent in hypernyms(s):
            edges.add((wnid(parent), wnid(s)))
            stack.append(parent)
    is_a = "".join(f"{p} {c}\n" for p, c in sorted(edges))
    words = "".join(f"{w}\t{names[w]}\n" for w in sorted(names))
    return is_a, words


def build_imagenet(root: Path, per_wnid: int = 4) -> Path:
    rng = np.random.default_rng(1)
    for k, w in enumerate(sorted(IMAGENET)):
        for i in range(per_wnid):
            jpeg(root / "train" / w / f"{w}_{i + 1}.JPEG", rng, k)
    is_a, words = wordnet_hierarchy(IMAGENET)
    (root / "wordnet.is_a.txt").write_text(is_a, encoding="utf-8")
    (root / "words.txt").write_text(words, encoding="utf-8")
    return root


def build_esp(root: Path) -> Path:
    """ESPGame100k as it unpacks: originals/, thumbnails/ (not read), labels/<n>.jpg.desc."""
    rng = np.random.default_rng(2)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for n, tags in enumerate(ESP_TAGS):
        jpeg(root / "originals" / f"{n}.jpg", rng, n, size=(80, 100) if n % 2 else (100, 70))
        jpeg(root / "thumbnails" / f"{n}.jpg", rng, n, size=(20, 15))
        (root / "labels" / f"{n}.jpg.desc").write_text(tags, encoding="utf-8")
    return root


def build_text8(path: Path, n_words: int = 40_000) -> Path:
    """One line of words from the two benchmarks' vocabularies, in topical runs, no newline."""
    from mmlightning.datasets import load_benchmark

    vocab = sorted(set(load_benchmark("ws353").words()) | set(load_benchmark("men").words()))
    vocab = [w for w in vocab if w.isalpha()]
    rng = np.random.default_rng(3)
    out: list[str] = []
    while len(out) < n_words:
        start = int(rng.integers(0, len(vocab) - 20))  # neighbours in sorted order share a "topic"
        out += [vocab[start + int(j)] for j in rng.integers(0, 20, 8)] + ["the", "of", "and"]
    path.write_text(" " + " ".join(out[:n_words]), encoding="utf-8")
    return path


def bnc_document(doc_id: str, sentences) -> str:
    """One BNC XML edition document."""
    body = []
    for n, sent in enumerate(sentences, start=1):
        words = "".join(f'<w c5="{c5}" hw="{hw}" pos="{pos}">{w.capitalize() if i == 0 else w} </w>'
                        for i, (w, hw, c5, pos) in enumerate(sent))
        body.append(f'<s n="{n}">{words}<c c5="PUN">.</c></s>')
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<bncDoc xml:id="{doc_id}"><teiHeader><fileDesc><titleStmt><title>Stand-in {doc_id}. '
            'Sample containing about 20 words of prose</title></titleStmt></fileDesc></teiHeader>\n'
            '<wtext type="OTHERPUB"><div level="1"><head>Stand-in</head><p>\n'
            + "\n".join(body) + "\n</p></div></wtext></bncDoc>\n")


def build_bnc(texts: Path) -> Path:
    """BNC/Texts/A/A0/A00.xml and A01.xml (the edition's folder structure)."""
    folder = texts / "A" / "A0"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        (folder / f"A0{i}.xml").write_text(bnc_document(f"A0{i}", BNC_SENTENCES[i:] + BNC_SENTENCES[:i]),
                                           encoding="utf-8")
    return texts


def build_checkpoint(path: Path, seed: int = 0) -> Path:
    """A `fit`-format checkpoint of CNN1512 with 1512 classes, tiny conv width and 16-unit FC layers."""
    import torch

    from mmlightning.features.alexnet1512 import CNN1512

    torch.manual_seed(seed)
    module = CNN1512(num_classes=1512, fc_dim=16, width=0.05, dropout=0.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "epoch": 0, "global_step": 0}, path)
    return path


def build_standins(root: Path) -> dict[str, Path]:
    """Every stand-in under `root`; {imagenet, esp, text8, bnc, checkpoint} -> path."""
    root = Path(root)
    return {"imagenet": build_imagenet(root / "imagenet"), "esp": build_esp(root / "ESPGame100k"),
            "text8": build_text8(root / "text8"), "bnc": build_bnc(root / "BNC" / "Texts"),
            "checkpoint": build_checkpoint(root / "cnn1512" / "last.ckpt")}


def paper_command(paths: dict[str, Path], out: Path) -> list[str]:
    """`reproduce --config configs/reproduce_paper.yaml` with the paths filled in, CPU, and sizes for a quick run."""
    return [
        sys.executable, "-m", "mmlightning", "reproduce", "--config", str(PAPER_CONFIG),
        # the paths marked FILL IN, and the output folders
        "--corpus", f"[{paths['text8']}, {paths['bnc']}]",
        "--sources.imagenet.root", str(paths["imagenet"]), "--sources.esp.root", str(paths["esp"]),
        "--backbone_kwargs", f"{{checkpoint: {paths['checkpoint']}}}",
        "--checkpoints", str(out / "checkpoints"), "--reports", str(out / "reports"),
        # this machine: the CPU; compiling the skip-gram kernel (~30 s) would cost more than the whole tiny run
        "--accelerator", "cpu", "--devices", "1", "--num_workers", "0", "--skipgram.compile", "false",
        # sizes: a quick run
        "--sources.imagenet.n_per_word", "3", "--sources.esp.n_per_word", "3",
        "--skipgram.epochs", "1", "--skipgram.dim", "16",
        "--batch_size", "16", "--bovw_k", "4", "--bovw_max_images", "32", "--n_boot", "50",
    ]


if __name__ == "__main__":
    import shlex

    if len(sys.argv) != 2:
        sys.exit("usage: python tests/standins.py FOLDER")
    built = build_standins(Path(sys.argv[1]))
    for name, p in built.items():
        print(f"{name}: {p}")
    print(" ".join(shlex.quote(a) for a in paper_command(built, Path(sys.argv[1]) / "run")))

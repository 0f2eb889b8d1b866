"""Label quality of an image source: visual-only Spearman on MEN / WS353 for several label-rule variants.

    python benchmarks/label_quality.py --source tuxpaint --variants '{"short": {}, "none": {"description": "none"}}'
    python benchmarks/label_quality.py --source openclipart --n 25 \
        --variants '{"default": {}, "title_only": {"max_keywords": 0}}'
    python benchmarks/label_quality.py --source tuxpaint --benchmarks men ws353 simlex999 \
        --variants '{"labels": {}, "subtree": {"subtree": true}}'

For each variant (source options), images are selected as `shard` would (N per word, seed), every
selected image gets one EfficientNet-Lite0 pooled feature (cached in --cache, computed once for the
union of all variants), each word the mean of its images' features (CNN-Mean), and each benchmark pair
the cosine of its two words. Printed: Spearman rho against the gold scores on the pairs whose two words
have images under the variant, and on the pairs every variant covers (a fair comparison). No text vectors
are involved: it isolates how well a label rule's images tell related words apart. CPU; the feature pass
runs at roughly 10-30 images/s on two cores.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from scipy.stats import spearmanr

from mmlightning.features.backbones import build_backbone
from mmlightning.datasets import benchmark_vocabulary, load_benchmark
from mmlightning.images.preprocess import get_scheme
from mmlightning.images.sources import open_source
from mmlightning.images.sources.imageio import ImageError, load_image


def features(refs, cache: Path, batch_size: int = 32) -> dict[str, torch.Tensor]:
    """path -> pooled feature for every ref, reusing and extending the cache file."""
    feats = torch.load(cache) if cache.is_file() else {}
    todo = [r for r in {r.path: r for r in refs}.values() if r.path not in feats]
    if todo:
        backbone = build_backbone("efficientnet_lite0").eval()
        scheme = get_scheme(backbone.preprocess)
        for start in range(0, len(todo), batch_size):
            batch, paths = [], []
            for ref in todo[start:start + batch_size]:
                try:
                    batch.append(scheme(load_image(ref, 256)))
                    paths.append(ref.path)
                except ImageError:
                    pass
            if batch:
                with torch.no_grad():
                    for p, f in zip(paths, backbone(torch.stack(batch))):
                        feats[p] = f.clone()
            print(f"features: {min(start + batch_size, len(todo))}/{len(todo)}", flush=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(feats, cache)
    return feats


def word_means(by_word, feats) -> dict[str, torch.Tensor]:
    out = {}
    for word, refs in by_word.items():
        vecs = [feats[r.path] for r in refs if r.path in feats]
        if vecs:
            out[word] = torch.stack(vecs).mean(0)
    return out


def rho(means, pairs) -> tuple[float, int]:
    gold, pred = [], []
    for a, b, g in pairs:
        if a in means and b in means:
            gold.append(g)
            pred.append(torch.cosine_similarity(means[a], means[b], dim=0).item())
    return (spearmanr(gold, pred).statistic if len(gold) > 2 else float("nan")), len(gold)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="tuxpaint")
    ap.add_argument("--root", default=None)
    ap.add_argument("--variants", default='{"default": {}}', help="JSON: name -> source options")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=None, help="feature cache (.pt)")
    ap.add_argument("--benchmarks", nargs="+", default=["men", "ws353"], help="whose words get images and pairs scored")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    cache = args.cache or Path(f"checkpoints/label_quality/{args.source}-features.pt")
    vocab = sorted(benchmark_vocabulary(args.benchmarks))
    selections = {name: open_source(args.source, args.root, **opts).candidates(vocab, args.n, args.seed).by_word
                  for name, opts in json.loads(args.variants).items()}
    feats = features([r for sel in selections.values() for refs in sel.values() for r in refs], cache)
    means = {name: word_means(sel, feats) for name, sel in selections.items()}
    for bench in args.benchmarks:
        pairs = load_benchmark(bench).pairs
        common = [p for p in pairs if all(p[0] in m and p[1] in m for m in means.values())]
        for name, m in means.items():
            r, n = rho(m, pairs)
            rc, nc = rho(m, common)
            print(f"{bench:9s} {name:24s} rho {r:.3f} on {n} pairs | {rc:.3f} on the {nc} pairs every variant covers")


if __name__ == "__main__":
    main()

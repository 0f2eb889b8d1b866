"""A report to look at: reports/index.html (every set x every system, Table 1, Figure 4, Table 2 with
image strips) + a page per source.

    paths = write_html_report(result, "reports", shards={"tuxpaint": "ck/shard-tuxpaint-.../manifest.json"},
                              aggregates={"tuxpaint": "ck/extract-tuxpaint-.../aggregates.pt"})
    # reports/index.html, reports/source-tuxpaint.html: self-contained (thumbnails inlined as base64 JPEG)

The images of a word are read back from the source's shards (WebDataset tars: `<key>.json` holds the
sample's `words`, next to `<key>.<ext>`), read-only, with `tarfile`; at most `per_word` per word, in
shard order. The tables are the Markdown report's (`report.render_markdown`) turned into HTML; the numbers
of the HTML-only tables are formatted by `report.primitives` too.
"""
from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import os
import re
import tarfile
from pathlib import Path
from typing import Iterable, Mapping

from mmlightning.atomic import safe_child, write_text
from mmlightning.evaluation.report.primitives import num, short_num

log = logging.getLogger(__name__)

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "ppm", "bmp", "gif", "tif", "tiff")
CSS = """body{font-family:sans-serif;margin:1.5em;max-width:1400px}table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;vertical-align:middle}th{background:#f3f3f3}
.strip img{height:64px;margin:1px;border:1px solid #ddd}.none{color:#999}h1{font-size:1.6em}
figure img{max-width:100%}"""


# ------------------------------------------------------------------------------------ shards
def shard_paths(spec: str | os.PathLike) -> list[Path]:
    """The .tar files of a shard folder or its manifest.json (manifest order, else sorted)."""
    p = Path(spec)
    folder = p.parent if p.name == "manifest.json" else p
    manifest = folder / "manifest.json"
    if manifest.is_file():
        return [folder / s["name"] for s in json.loads(manifest.read_text(encoding="utf-8"))["shards"]]
    return sorted(folder.glob("*.tar"))


def image_index(spec: str | os.PathLike, words: Iterable[str] | None = None, per_word: int = 6) -> dict:
    """{word: [(tar path, member TarInfo), ...]}: up to `per_word` images per word (all words if None)."""
    wanted = None if words is None else {w.lower() for w in words}
    index: dict[str, list] = {}
    for tar in shard_paths(spec):
        try:
            with tarfile.open(tar) as tf:
                members = {m.name: m for m in tf.getmembers() if m.isfile()}
                for name, m in members.items():
                    if not name.endswith(".json"):
                        continue
                    key = name[: -len(".json")]
                    img = next((members[f"{key}.{e}"] for e in IMAGE_EXTS if f"{key}.{e}" in members), None)
                    if img is None:
                        continue
                    try:
                        meta = json.loads(tf.extractfile(m).read())
                    except (ValueError, AttributeError):
                        continue
                    for w in meta.get("words") or []:
                        lw = w.lower()
                        if (wanted is None or lw in wanted) and len(index.setdefault(lw, [])) < per_word:
                            index[lw].append((tar, img))
        except (tarfile.TarError, OSError) as e:
            log.warning("%s: unreadable shard skipped in the HTML report (%s)", tar, e)
    return index


def thumbnails(refs: list, size: int = 96, tars: dict | None = None, memo: dict | None = None) -> list[str]:
    """Data URIs (base64 JPEG, longest side `size`) of the images `refs` [(tar path, TarInfo)].

    `tars` {path: open TarFile} is reused across calls (the caller closes them); `memo` {(tar, member, size):
    URI} too, so an image shown for several words is decoded once; a bad image is skipped.
    """
    from PIL import Image

    tars = {} if tars is None else tars
    memo = {} if memo is None else memo
    out = []
    for tar, member in refs:
        key = (str(tar), member.name, size)
        if key in memo:
            out.append(memo[key])
            continue
        try:
            if tar not in tars:
                tars[tar] = tarfile.open(tar)
            im = Image.open(io.BytesIO(tars[tar].extractfile(member).read())).convert("RGB")
        except Exception as e:  # noqa: BLE001 - a bad image only loses its thumbnail
            log.warning("%s:%s: no thumbnail (%s)", tar, member.name, e)
            continue
        im.thumbnail((size, size))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=70)
        memo[key] = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
        out.append(memo[key])
    return out


def strip(uris: list[str], word: str) -> str:
    """An HTML strip of thumbnails (or a grey 'no images')."""
    if not uris:
        return '<span class="none">no images</span>'
    alt = html.escape(word, quote=True)
    return '<span class="strip">' + "".join(f'<img src="{u}" alt="{alt}">' for u in uris) + "</span>"


# ------------------------------------------------------------------------------------ markdown
def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def markdown_to_html(md: str) -> str:
    """The subset of Markdown the reports use: #-headings, pipe tables, bullet lists, paragraphs, **bold**."""
    out, lines, i = [], md.splitlines(), 0
    while i < len(lines):
        line = lines[i].rstrip()
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(set(c) <= {"-", ":"} for c in cells):
                    rows.append(cells)
                i += 1
            head, body = rows[0], rows[1:]
            out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>" +
                       "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body) +
                       "</table>")
            continue
        m = re.match(r"^(#{1,6}) (.*)", line)
        if m:
            n = len(m.group(1))
            out.append(f"<h{n}>{_inline(m.group(2))}</h{n}>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif line and not line.startswith("!["):
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(out)


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")


# ------------------------------------------------------------------------------------ pages
def _table2_html(result: dict, thumbs: Mapping[str, Mapping[str, list]]) -> str:
    """Table 2 with, for each word, the image strip of every source that has images for it."""
    from mmlightning.evaluation.report import table2_pairs

    system = result["table2_system"]
    out = [f"<h2>Table 2: best and worst pairs of {html.escape(system)}, with the images that ground each word</h2>"]
    for bench, pairs in table2_pairs(result):
        rows = []
        for kind, p in pairs:
            cells = [kind, short_num(p["gold"]), num(p["cosine"])]
            for w in (p["word1"], p["word2"]):
                strips = "<br>".join(f"{html.escape(s)}: {strip(tw.get(w.lower(), []), w)}"
                                     for s, tw in thumbs.items() if tw.get(w.lower()))
                cells.append(f"<b>{html.escape(w)}</b><br>{strips or strip([], w)}")
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        out.append(f"<h3>{html.escape(bench)}</h3><table><tr><th></th><th>gold</th><th>cosine</th>"
                   f"<th>word 1</th><th>word 2</th></tr>{''.join(rows)}</table>")
    return "\n".join(out)


def source_page(source: str, index: Mapping[str, list], stats: Mapping[str, tuple[float, int]], per_word: int,
                tars: dict | None = None, memo: dict | None = None) -> str:
    """One source: every word with images, its image count, dispersion and image strip (least dispersed first)."""
    def disp(w):
        d = stats.get(w, (math.nan, 0))[0]
        return None if math.isnan(d) else d

    rows = []
    for w in sorted(index, key=lambda w: (disp(w) is None, disp(w) or 0.0, w)):
        d, n = disp(w), stats.get(w, (math.nan, len(index[w])))[1]
        uris = thumbnails(index[w][:per_word], size=64, tars=tars, memo=memo)
        rows.append(f"<tr><td>{html.escape(w)}</td><td>{n}</td><td>{num(d)}</td>"
                    f"<td>{strip(uris, w)}</td></tr>")
    body = (f"<h1>Images of source {html.escape(source)}</h1><p><a href=\"index.html\">back to the report</a>. "
            f"{len(index)} words with images; image dispersion = mean pairwise cosine distance of a word's image "
            "features (Kiela et al. 2014; n/a below two images), least dispersed first.</p>"
            f"<table><tr><th>word</th><th>images</th><th>dispersion</th><th>images (up to {per_word} shown)</th></tr>{''.join(rows)}</table>")
    return _page(f"mmlightning: {source} images", body)


def _dispersion_of(path) -> dict[str, tuple[float, int]]:
    """{word (lower-cased): (dispersion, image count)} from a source's aggregates.pt."""
    from mmlightning.features.aggregates import dispersion, load_aggregates

    agg, _ = load_aggregates(path)
    return {w.lower(): (float(d), int(n)) for w, d, n in zip(agg.words, dispersion(agg).tolist(), agg.count.tolist())}


def _grounding_figure(out: Path) -> str:
    fig = out / "grounding_concreteness.png"
    if not fig.is_file():
        return ""
    return ('<figure><img alt="minus text by concreteness quartile" src="data:image/png;base64,'
            + base64.b64encode(fig.read_bytes()).decode() + '"></figure>')


def write_html_report(result: dict, out_dir: str | os.PathLike, shards: Mapping[str, str] | None = None,
                      aggregates: Mapping[str, str] | None = None, per_word: int = 6) -> dict[str, Path]:
    """Write index.html and source-<name>.html under `out_dir`; returns their paths."""
    tars: dict = {}
    try:
        return _write_pages(result, Path(out_dir), dict(shards or {}), dict(aggregates or {}), per_word, tars, {})
    finally:
        for tf in tars.values():
            tf.close()


def _write_pages(result: dict, out: Path, shards: dict, aggregates: dict, per_word: int, tars: dict,
                 memo: dict) -> dict[str, Path]:
    from mmlightning.evaluation.report import render_markdown

    t2_words = {p[k] for per in result.get("table2", {}).values() for t in per.values()
                for kind in ("best", "worst") for p in t[kind] for k in ("word1", "word2")}
    thumbs = {}
    for src, spec in shards.items():
        idx = image_index(spec, t2_words, per_word)
        thumbs[src] = {w: thumbnails(refs, tars=tars, memo=memo) for w, refs in idx.items()}
    md = render_markdown(result, tables=("settings", "suite", "table1", "diff", "categorisation"))
    fig = out / "figure4_alpha.png"
    fig_html = ""
    if fig.is_file():
        fig_html = ('<h2>Figure 4: rho against alpha</h2><figure><img alt="Figure 4" src="data:image/png;base64,'
                    + base64.b64encode(fig.read_bytes()).decode() + '"></figure>')
    links = " ".join(f'<a href="source-{html.escape(s)}.html">{html.escape(s)}</a>' for s in shards)
    body = ("<h1>mmlightning: multi-modal word representations</h1>"
            + (f"<p>Images per source: {links}</p>" if links else "")
            + markdown_to_html(md) + fig_html + _table2_html(result, thumbs)
            + markdown_to_html(render_markdown(result, tables=("tuned", "grounding"))) + _grounding_figure(out))
    paths = {"index": out / "index.html"}
    write_text(paths["index"], _page("mmlightning report", body))
    for src, spec in shards.items():
        disp = _dispersion_of(aggregates[src]) if src in aggregates else {}
        paths[f"source:{src}"] = safe_child(out, f"source-{src}.html", what="source")
        page = source_page(src, image_index(spec, None, per_word), disp, per_word, tars, memo)
        write_text(paths[f"source:{src}"], page)
    return paths

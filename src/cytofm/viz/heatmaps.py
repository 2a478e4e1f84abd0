"""The work behind ``cytofm heatmap``: ViT attention maps of images and ABMIL attention painted on sources,
each scored against annotated regions (Pascal VOC boxes or QuPath GeoJSON polygons) where they exist, and
each drawn map also written as QuPath GeoJSON (``<name>.geojson``: one tile per patch with its attention),
to be imported over the image in QuPath for review."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from cytofm.data.annotations.geojson import annotation_feature, tile_feature, write_feature_collection
from cytofm.data.annotations.regions import find_regions, is_box, region_outlines
from cytofm.utils.display import display_name
from cytofm.utils.errors import InputError
from cytofm.utils.progress import StageTask
from cytofm.viz.localization import localisation_target, map_scores, patch_scores, pixel_target


def find_boxes(boxes_dir: str | Path | None, source: str | Path, box_class: str, log=print) -> list | None:
    """Regions of ``box_class`` for a source: VOC boxes from ``boxes_dir/<stem>.xml`` and QuPath polygons
    from ``<stem>.geojson`` (or ``.json``) whose classification is the class; None when there is no file,
    [] when no file holds such an object (see :func:`cytofm.data.annotations.regions.find_regions`)."""
    return find_regions(boxes_dir, source, box_class, log)


def warn_unmatched_boxes(boxes_dir: str | Path | None, sources, box_class: str, log=print) -> int:
    """How many sources have an annotation of ``box_class``; a warning with the counts when none has (a
    folder of another data set, other file names, another class name): nothing would be scored, silently."""
    if not boxes_dir:
        return 0
    sources = list(sources)
    found = [find_boxes(boxes_dir, s, box_class, log) for s in sources]
    n_file = sum(b is not None for b in found)
    n_class = sum(bool(b) for b in found)
    if n_class == 0:
        why = (f"none of the {len(sources)} items has a <name>.xml there (nor a QuPath <name>.geojson)"
               if n_file == 0 else
               f"{n_file} of {len(sources)} items have a file, but none holds a '{box_class}' object "
               "(VOC object name or QuPath classification)")
        log(f"warning: --boxes {boxes_dir}: {why}; attention is not scored against annotations")
    return n_class


def attention_geojson(coords, size0: int, attention, path: str | Path,
                      extra_measurements: Mapping[str, np.ndarray] | None = None,
                      prediction: tuple[str, Mapping[str, float]] | None = None) -> Path:
    """An item's instances as QuPath tiles for review: the ``size0``-pixel square at each level-0
    ``coords`` (N, 2) with its ``Attention`` and any per-instance ``extra_measurements`` (name -> (N,)
    values, e.g. ``{"P(malignant)": ...}``); with ``prediction`` = (predicted class, {class: probability})
    also one annotation over the instances' extent, named and classified by the predicted class, with
    ``P(<class>)`` measurements."""
    c = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
    a = np.asarray(attention, dtype=np.float64).reshape(-1)
    extra = {str(k): np.asarray(v, dtype=np.float64).reshape(-1)
             for k, v in (extra_measurements or {}).items()}
    for name, v in {"attention": a, **extra}.items():
        if len(v) != len(c):
            raise ValueError(f"{name}: {len(v)} values for {len(c)} instances")
    feats = [tile_feature(int(x), int(y), size0, size0,
                          {"Attention": a[k], **{n: v[k] for n, v in extra.items()}})
             for k, (x, y) in enumerate(c)]
    if prediction is not None and len(c):
        import shapely

        label, probs = prediction
        (x0, y0), (x1, y1) = c.min(0), c.max(0) + size0
        feats.append(annotation_feature(shapely.box(x0, y0, x1, y1), name=str(label),
                                        classification=str(label),
                                        measurements={f"P({k})": float(p) for k, p in probs.items()}))
    return write_feature_collection(path, feats)


def _spread(n: int, k: int) -> list[int]:
    return sorted(set(np.linspace(0, n - 1, min(n, k)).round().astype(int).tolist())) if n else []


def _safe(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s)[:100]


def _what(boxes) -> str:
    """How a subtitle names the annotation: 'box' for VOC boxes (as always), 'region' once polygons count."""
    return "box" if all(is_box(b) for b in boxes) else "region"


def _thumbnail(path: str, max_side: int, item: str, log):
    """(thumbnail, its scale, level-0 (H, W)) of a source, or None (logged) when it cannot be read."""
    from cytofm.data.sources.kinds import kind_of
    from cytofm.data.sources.source import open_source

    try:
        kind = kind_of(path) or "image"
        src = open_source(path, kind)
        rgb, scale = src.thumbnail(max_side)
        shape0 = (src.height, src.width)
        src.close()
    except Exception as e:  # unreadable source: the scores of the others still count
        log(f"skipped {item}: cannot read {path}: {e}")
        return None
    return rgb, scale, shape0


def attention_preview_png(source: str, coords, size0: int, attention, path: str | Path,
                          max_side: int = 768, log=print) -> Path | None:
    """An item's attention over a thumbnail of its source, as a plain PNG (no title or colour bar): the
    overlay alone, for a caller that frames it itself (``cytofm predict`` draws
    :func:`prediction_heatmap_png`). None (logged) when the source cannot be read."""
    from PIL import Image

    parts = _preview_parts(source, coords, size0, attention, max_side, Path(path).stem, log)
    if parts is None:
        return None
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(parts[1]).save(path, compress_level=1)
    return Path(path)


PANEL_MIN = 512
"""A thumbnail smaller (a 257 px crop) is enlarged by a whole factor, pixels repeated, to be readable."""
PAD, LINE, BAR_W, TICKS_W = 16, 22, 20, 110
"""The two-panel preview's margins, text line height, colour bar width and the room for its values."""


def preview_layout(h: int, w: int, n_caption: int) -> dict[str, tuple[int, int, int, int]]:
    """Where the parts of a two-panel preview of h x w panels lie, as (x0, y0, x1, y1): the caption's
    ``n_caption`` lines on top, the panel titles, the image (left), its overlay (right), the colour bar."""
    top = PAD + n_caption * LINE + PAD // 2
    y0 = top + LINE
    left = (PAD, y0, PAD + w, y0 + h)
    right = (2 * PAD + w, y0, 2 * PAD + 2 * w, y0 + h)
    bar = (right[2] + PAD, y0, right[2] + PAD + BAR_W, y0 + h)
    return {"caption": (PAD, PAD, bar[2] + TICKS_W, top), "left": left, "right": right, "bar": bar,
            "canvas": (0, 0, bar[2] + TICKS_W + PAD, y0 + h + PAD)}


def _preview_parts(source: str, coords, size0: int, attention, max_side: int, name: str, log):
    """(thumbnail, overlay as uint8, heat map) of an item's attention over its source, or None (logged)."""
    from cytofm.viz.figures import compose_overlay, paint_patches

    view = _thumbnail(source, max_side, name, log)
    if view is None or not size0:
        return None
    rgb, scale, _ = view
    c = np.round(np.asarray(coords) * scale).astype(np.int64)
    heat = paint_patches(rgb.shape[:2], c, max(1, int(round(size0 * scale))), np.asarray(attention, float))
    out = (np.clip(compose_overlay(rgb, heat), 0, 1) * 255).round().astype(np.uint8)
    return np.asarray(rgb, np.uint8)[..., :3], out, heat


def _wrap(lines: list[str], font, width: int) -> list[str]:
    """Each line broken at spaces so that it fits ``width`` pixels (a narrow image's preview)."""
    out = []
    for line in lines:
        cur = ""
        for word in line.split(" "):
            if cur and font.getlength(f"{cur} {word}") > width:
                out.append(cur)
                cur = word
            else:
                cur = f"{cur} {word}" if cur else word
        out.append(cur)
    return out


def prediction_heatmap_png(source: str, coords, size0: int, attention, path: str | Path, caption: str,
                           max_side: int = 768, log=print) -> Path | None:
    """What ``cytofm predict`` draws for an item: its image beside the attention overlay (the morphology
    stays readable), a colour bar of the item's attention from its minimum to its maximum, and ``caption``
    (the predicted class and probability) on top, also kept in the PNG's ``Description``. Small images are
    enlarged by a whole factor; drawn with PIL, as a figure per item would cost more than extracting it.
    None (logged) when the source cannot be read."""
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont
    from PIL.PngImagePlugin import PngInfo

    parts = _preview_parts(source, coords, size0, attention, max_side, Path(path).stem, log)
    if parts is None:
        return None
    rgb, overlay, heat = parts
    k = max(1, -(-PANEL_MIN // max(rgb.shape[:2])))
    rgb, overlay = (np.repeat(np.repeat(a, k, 0), k, 1) for a in (rgb, overlay))
    finite = heat[np.isfinite(heat)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    font = ImageFont.load_default(size=16)
    lines = _wrap([caption, f"colour: attention weight of each patch, from this item's minimum {lo:.3g} "
                   f"(dark) to its maximum {hi:.3g} (bright)"
                   + ("; grey: not kept (background)" if finite.size < heat.size else "")],
                  font, preview_layout(*rgb.shape[:2], 0)["canvas"][2] - 2 * PAD)
    box = preview_layout(*rgb.shape[:2], len(lines))
    canvas = Image.new("RGB", box["canvas"][2:], "white")
    canvas.paste(Image.fromarray(rgb), box["left"][:2])
    canvas.paste(Image.fromarray(overlay), box["right"][:2])
    x0, y0, x1, y1 = box["bar"]
    ramp = matplotlib.colormaps["inferno"](np.linspace(1, 0, y1 - y0))[:, :3]
    bar = np.repeat((ramp * 255).round().astype(np.uint8)[:, None], x1 - x0, 1)
    canvas.paste(Image.fromarray(bar), (x0, y0))
    draw = ImageDraw.Draw(canvas)
    for n, line in enumerate(lines):
        draw.text((PAD, PAD + n * LINE), line, fill="black", font=font)
    for (bx, by), title in ((box["left"][:2], "image"), (box["right"][:2], "attention over the image")):
        draw.text((bx, by - LINE + 2), title, fill="black", font=font)
    draw.text((x1 + 6, y0), f"{hi:.3g} max", fill="black", font=font)
    draw.text((x1 + 6, y1 - LINE), f"{lo:.3g} min", fill="black", font=font)
    info = PngInfo()
    info.add_text("Description", "\n".join(lines))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, pnginfo=info, compress_level=1)
    return Path(path)


def _draw_mil(rgb, scale: float, coords, size0: int, a: np.ndarray, boxes, r: dict | None, title: str,
              name: str, stem: Path, smooth: bool) -> None:
    """One item's heatmap (the boxes or regions outlined, its scores in the subtitle) and gallery."""
    from cytofm.viz.figures import gallery_png, overlay_png, paint_patches

    c = np.round(np.asarray(coords) * scale).astype(np.int64)
    s = max(1, int(round(size0 * scale)))
    heat = paint_patches(rgb.shape[:2], c, s, a, smooth=smooth)
    sub = "attention (patch weight, overlaps averaged)"
    if boxes and r is not None:
        what = _what(boxes)
        sub = (f"attention mass on {what} {r['mass']:.2f} (uniform {r['chance_mass']:.2f}), "
               f"top patch {'on' if r['hit'] else 'off'} {what}")
    outline = [ring for b in boxes for ring in region_outlines(b, scale)] if boxes else None
    overlay_png(rgb, heat, stem.with_name(f"{stem.name}_heatmap.png"), f"{title}: {name}", "attention weight",
                outline, sub)
    gallery_png(rgb, c, s, a, stem.with_name(f"{stem.name}_gallery.png"),
                f"most / least attended patches: {name}")


def mil_heatmaps(features: str | Path, attention: dict[str, np.ndarray], out: str | Path, boxes_dir=None,
                 box_class: str = "WBC", limit: int = 12, smooth: bool = True, max_side: int = 1600,
                 title: str = "ABMIL attention", log=print,
                 predictions: Mapping[str, tuple[str, Mapping[str, float]]] | None = None) -> list[dict]:
    """Paint each item's instance attention at its coordinates; score all items with boxes, draw ``limit``
    (each drawn item also as ``<id>.geojson``, its patches as QuPath tiles with their attention, and with
    ``predictions`` (id -> (predicted class, {class: probability})) the item's prediction as an annotation;
    see :func:`attention_geojson`)."""
    from cytofm.features.store import load_store, read_item

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {r["id"]: r for r in load_store(features)}
    ids = [i for i in attention if i in rows]
    if not ids:
        raise InputError(f"none of the {len(attention)} attention items is in the feature store {features}")
    draw = {ids[k] for k in _spread(len(ids), limit)}
    scores = []
    for i in ids:
        row = rows[i]
        boxes = find_boxes(boxes_dir, row["path"], box_class, log)
        if i not in draw and boxes is None:  # neither drawn nor scored
            continue
        _, coords, attrs = read_item(row["h5"])
        a = np.asarray(attention[i], dtype=np.float64)
        if len(a) != len(coords):
            log(f"skipped {i}: {len(a)} attention weights for {len(coords)} patches")
            continue
        size0 = int(attrs.get("patch_size_level0") or attrs.get("patch_size") or 0)
        view = _thumbnail(row["path"], max_side, i, log)
        if view is None:
            continue
        rgb, scale, shape0 = view
        r = None
        if boxes is not None and size0:
            r = {"id": i, **patch_scores(a, coords, size0, localisation_target(boxes, shape0)),
                 "n_boxes": len(boxes)}
            if boxes:
                scores.append(r)
        if i in draw and size0:
            label = f" ({row['label']})" if row.get("label") else ""
            _draw_mil(rgb, scale, coords, size0, a, boxes, r, title, f"{i}{label}", out / _safe(i), smooth)
            attention_geojson(coords, size0, a, out / f"{_safe(i)}.geojson",
                              prediction=(predictions or {}).get(i))
    if scores:
        from cytofm.utils.io import write_csv

        write_csv(out / "localization.csv", scores)
    return scores


def _patch_grid(h: int, w: int, encoder, tiles: bool | None) -> tuple[np.ndarray, np.ndarray]:
    """Row and column edges of the ViT's patches over an h x w image, as ``attention_map`` reads it:
    patch-size cells at native resolution when tiled, else the input's grid stretched over the image."""
    from cytofm.viz.vit_attention import find_vit

    p = find_vit(encoder.model).patch_embed.patch_size
    p = int(p[0] if isinstance(p, tuple | list) else p)
    s = encoder.input_size
    if (max(h, w) > 2 * s) if tiles is None else tiles:
        return np.unique(np.r_[np.arange(0, h, p), h]), np.unique(np.r_[np.arange(0, w, p), w])
    g = max(1, s // p)
    return (np.unique(np.round(np.linspace(0, h, g + 1)).astype(np.int64)),
            np.unique(np.round(np.linspace(0, w, g + 1)).astype(np.int64)))


def _vit_geojson(encoder, mean: np.ndarray, tiles: bool | None, path: Path) -> Path:
    """The head-mean map as one QuPath tile per ViT patch, each with the attention mass on its pixels."""
    ys, xs = _patch_grid(*mean.shape, encoder, tiles)
    mass = np.add.reduceat(np.add.reduceat(np.asarray(mean, np.float64), ys[:-1], axis=0), xs[:-1], axis=1)
    feats = [tile_feature(int(xs[j]), int(ys[i]), int(xs[j + 1] - xs[j]), int(ys[i + 1] - ys[i]),
                          {"Attention": mass[i, j]})
             for i in range(len(ys) - 1) for j in range(len(xs) - 1)]
    return write_feature_collection(path, feats)


def vit_heatmaps(encoder, images: list[str | Path], out: str | Path, boxes_dir=None, box_class: str = "WBC",
                 limit: int = 12, tiles: bool | None = None, device="cpu", log=print,
                 progress=None) -> list[dict]:
    """[CLS] attention maps of ``images``: an overlay of the head mean, the per-head maps, scores, and
    ``<stem>.geojson`` (one QuPath tile per ViT patch with its attention) beside each drawn overlay."""
    from cytofm.data.sources.image_io import read_rgb
    from cytofm.viz.figures import heads_png, overlay_png
    from cytofm.viz.vit_attention import attention_map

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    draw = set(_spread(len(images), limit))
    scores = []
    who = display_name(encoder.spec)  # a figure names the encoder as the user can reproduce it, never a path
    with StageTask(progress, "attention maps", len(images), rate="") as task:
        for k, p in enumerate(images):
            boxes = find_boxes(boxes_dir, p, box_class, log)
            if k in draw or boxes:
                try:
                    rgb, _ = read_rgb(p)
                except Exception as e:
                    log(f"skipped {p}: {e}")
                    task.update(advance=1)
                    continue
                heads, mean = attention_map(encoder, rgb, device, tiles)
                sub = "[CLS] attention, mean of heads"
                if boxes:
                    r = {"id": Path(p).stem, **map_scores(mean, pixel_target(boxes, mean.shape)),
                         "n_boxes": len(boxes)}
                    scores.append(r)
                    what = _what(boxes)
                    sub = (f"mass on {what} {r['mass']:.2f} (area {r['chance_mass']:.2f}), "
                           f"peak {'on' if r['hit'] else 'off'} {what}")
                if k in draw:
                    name = _safe(Path(p).stem)
                    overlay_png(rgb, mean, out / f"{name}_attention.png", f"{who}: {Path(p).name}",
                                "[CLS] attention (each tile / image sums to 1)",
                                [ring for b in boxes for ring in region_outlines(b)] if boxes else None, sub)
                    heads_png(rgb, heads, out / f"{name}_attention_heads.png",
                              f"{who}: last-layer heads, {Path(p).name}")
                    _vit_geojson(encoder, mean, tiles, out / f"{name}.geojson")
            task.update(advance=1)
    if scores:
        from cytofm.utils.io import write_csv

        write_csv(out / "localization.csv", scores)
    return scores

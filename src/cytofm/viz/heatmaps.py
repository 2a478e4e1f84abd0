"""The work behind ``cytofm heatmap``: ViT attention maps of images and ABMIL attention painted on sources,
each scored against annotated boxes where they exist."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cytofm.data.annotations import read_voc_boxes
from cytofm.data.inputs import InputError
from cytofm.utils.display import display_name
from cytofm.utils.progress import StageTask
from cytofm.viz.localization import boxes_mask, map_scores, patch_scores


def find_boxes(boxes_dir: str | Path | None, source: str | Path, box_class: str) -> list | None:
    """Boxes of ``box_class`` for a source from ``boxes_dir/<stem>.xml``; None when there is no file,
    [] when the file has no such object."""
    if not boxes_dir:
        return None
    xml = Path(boxes_dir) / f"{Path(source).stem}.xml"
    if not xml.is_file():
        return None
    return [b for name, b in read_voc_boxes(xml) if name.lower() == box_class.lower()]


def warn_unmatched_boxes(boxes_dir: str | Path | None, sources, box_class: str, log=print) -> int:
    """How many sources have an annotation of ``box_class``; a warning with the counts when none has (a
    folder of another data set, other file names, another class name): nothing would be scored, silently."""
    if not boxes_dir:
        return 0
    sources = list(sources)
    found = [find_boxes(boxes_dir, s, box_class) for s in sources]
    n_file = sum(b is not None for b in found)
    n_class = sum(bool(b) for b in found)
    if n_class == 0:
        why = (f"none of the {len(sources)} items has a <name>.xml there" if n_file == 0 else
               f"{n_file} of {len(sources)} items have a file, but none holds a '{box_class}' object")
        log(f"warning: --boxes {boxes_dir}: {why}; attention is not scored against annotations")
    return n_class


def _spread(n: int, k: int) -> list[int]:
    return sorted(set(np.linspace(0, n - 1, min(n, k)).round().astype(int).tolist())) if n else []


def _safe(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s)[:100]


def mil_heatmaps(features: str | Path, attention: dict[str, np.ndarray], out: str | Path, boxes_dir=None,
                 box_class: str = "WBC", limit: int = 12, smooth: bool = True, max_side: int = 1600,
                 title: str = "ABMIL attention", log=print) -> list[dict]:
    """Paint each item's instance attention at its coordinates; score all items with boxes, draw ``limit``."""
    from cytofm.data.source import is_slide_file, open_source
    from cytofm.features.store import load_store, read_item
    from cytofm.viz.figures import gallery_png, overlay_png, paint_patches

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
        boxes = find_boxes(boxes_dir, row["path"], box_class)
        if i not in draw and boxes is None:  # neither drawn nor scored
            continue
        _, coords, attrs = read_item(row["h5"])
        a = np.asarray(attention[i], dtype=np.float64)
        if len(a) != len(coords):
            log(f"skipped {i}: {len(a)} attention weights for {len(coords)} patches")
            continue
        size0 = int(attrs.get("patch_size_level0") or attrs.get("patch_size") or 0)
        try:
            src = open_source(row["path"], "slide" if is_slide_file(row["path"]) else "image")
            rgb, scale = src.thumbnail(max_side)
            h0, w0 = src.height, src.width
            src.close()
        except Exception as e:  # unreadable source: the scores of the others still count
            log(f"skipped {i}: cannot read {row['path']}: {e}")
            continue
        if boxes is not None and size0:
            r = {"id": i, **patch_scores(a, coords, size0, boxes_mask(boxes, (h0, w0))),
                 "n_boxes": len(boxes)}
            if boxes:
                scores.append(r)
        if i in draw and size0:
            c = np.round(np.asarray(coords) * scale).astype(np.int64)
            s = max(1, int(round(size0 * scale)))
            heat = paint_patches(rgb.shape[:2], c, s, a, smooth=smooth)
            label = f" ({row['label']})" if row.get("label") else ""
            sub = "attention (patch weight, overlaps averaged)"
            if boxes:
                r = scores[-1]
                sub = (f"attention mass on box {r['mass']:.2f} (uniform {r['chance_mass']:.2f}), "
                       f"top patch {'on' if r['hit'] else 'off'} box")
            overlay_png(rgb, heat, out / f"{_safe(i)}_heatmap.png", f"{title}: {i}{label}",
                        "attention weight", [np.asarray(b) * scale for b in boxes] if boxes else None,
                        sub)
            gallery_png(rgb, c, s, a, out / f"{_safe(i)}_gallery.png",
                        f"most / least attended patches: {i}{label}")
    if scores:
        from cytofm.utils.io import write_csv

        write_csv(out / "localization.csv", scores)
    return scores


def vit_heatmaps(encoder, images: list[str | Path], out: str | Path, boxes_dir=None, box_class: str = "WBC",
                 limit: int = 12, tiles: bool | None = None, device="cpu", log=print,
                 progress=None) -> list[dict]:
    """[CLS] attention maps of ``images``: an overlay of the head mean, the per-head maps, and scores."""
    from cytofm.data.image_io import read_rgb
    from cytofm.viz.figures import heads_png, overlay_png
    from cytofm.viz.vit_attention import attention_map

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    draw = set(_spread(len(images), limit))
    scores = []
    who = display_name(encoder.spec)  # a figure names the encoder as the user can reproduce it, never a path
    with StageTask(progress, "attention maps", len(images), rate="") as task:
        for k, p in enumerate(images):
            boxes = find_boxes(boxes_dir, p, box_class)
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
                    r = {"id": Path(p).stem, **map_scores(mean, boxes_mask(boxes, mean.shape)),
                         "n_boxes": len(boxes)}
                    scores.append(r)
                    sub = (f"mass on box {r['mass']:.2f} (area {r['chance_mass']:.2f}), "
                           f"peak {'on' if r['hit'] else 'off'} box")
                if k in draw:
                    name = _safe(Path(p).stem)
                    overlay_png(rgb, mean, out / f"{name}_attention.png", f"{who}: {Path(p).name}",
                                "[CLS] attention (each tile / image sums to 1)", boxes or None, sub)
                    heads_png(rgb, heads, out / f"{name}_attention_heads.png",
                              f"{who}: last-layer heads, {Path(p).name}")
            task.update(advance=1)
    if scores:
        from cytofm.utils.io import write_csv

        write_csv(out / "localization.csv", scores)
    return scores

"""Object annotations used to score foreground finding and attention maps: Pascal VOC boxes and the
regions of QuPath GeoJSON exports (polygons, see :mod:`cytofm.data.annotations.geojson`), and where they
lie."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np


def read_voc_boxes(path: str | os.PathLike) -> list[tuple[str, np.ndarray]]:
    """``[(name, [xmin, ymin, xmax, ymax]), ...]`` from a Pascal VOC XML file."""
    root = ET.parse(path).getroot()
    out = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            continue
        box = np.array([float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")])
        out.append(((obj.findtext("name") or "").strip(), box))
    return out


_GEOJSON_CACHE: dict[tuple, list | None] = {}


def _geojson_regions(path: Path, log) -> list | None:
    """The annotations of one GeoJSON file, read (and its notes logged) once while it is unchanged: a
    command asks for the same source's regions more than once (the warning count, then the scores).
    None, with one warning, for a file that cannot be read: the other sources are still scored."""
    from cytofm.data.annotations.geojson import GeoJSONError, read_annotations

    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _GEOJSON_CACHE:
        if len(_GEOJSON_CACHE) >= 64:
            _GEOJSON_CACHE.clear()
        try:
            _GEOJSON_CACHE[key] = read_annotations(path, log=log)
        except GeoJSONError as e:
            log(f"warning: {e}; its regions are not used")
            _GEOJSON_CACHE[key] = None
    return _GEOJSON_CACHE[key]


def class_matches(classification: str | None, name: str) -> bool:
    """A QuPath class matches ``name`` (case-insensitively) as a whole or by its base class, so that
    ``WBC`` also finds ``WBC: Neutrophil``."""
    if not classification:
        return False
    c, n = classification.lower(), name.lower()
    return c == n or c.split(":")[0].strip() == n


def find_regions(folder: str | os.PathLike | None, source: str | os.PathLike, name: str,
                 log=print) -> list | None:
    """The annotated regions of class ``name`` for ``source``, from ``folder``: the boxes of
    ``<stem>.xml`` (Pascal VOC, as [xmin, ymin, xmax, ymax] arrays, exactly as before) and the polygons of
    ``<stem>.geojson`` / ``<stem>.json`` (QuPath, as shapely geometries; any object type with a region).
    Both files are read when both exist. None when there is neither file (a GeoJSON file that cannot be
    read counts as none, with a warning naming it and why); [] when none holds the class.
    """
    from cytofm.data.annotations.geojson import geojson_for

    if not folder:
        return None
    xml = Path(folder) / f"{Path(source).stem}.xml"
    gj = geojson_for(folder, source)
    polygons = _geojson_regions(gj, log) if gj is not None else None
    if not xml.is_file() and polygons is None:
        return None
    out: list = []
    if xml.is_file():
        out += [b for n, b in read_voc_boxes(xml) if n.lower() == name.lower()]
    out += [a.geometry for a in polygons or [] if class_matches(a.classification, name)]
    return out


def is_box(region) -> bool:
    """A VOC box ([xmin, ymin, xmax, ymax]) rather than a shapely geometry."""
    return not hasattr(region, "geom_type")


def region_outlines(region, scale: float = 1.0) -> list[np.ndarray]:
    """The closed rings a figure draws for a region, as (K, 2) x, y arrays times ``scale``: a box's four
    corners, a polygon's exterior and holes (each part of a multi-part geometry), so that a QuPath
    polygon is drawn as annotated, not as its bounding box."""
    if is_box(region):
        x0, y0, x1, y1 = (float(v) for v in region)
        return [np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) * scale]
    if hasattr(region, "geoms"):  # a multi-part geometry or a collection
        return [ring for part in region.geoms for ring in region_outlines(part, scale)]
    if region.geom_type != "Polygon":
        return []
    return [np.asarray(r.coords)[:, :2] * scale for r in (region.exterior, *region.interiors)]


def region_union(regions):
    """One shapely geometry for boxes and polygons together."""
    import shapely

    return shapely.union_all([shapely.box(*map(float, r)) if is_box(r) else r for r in regions])


def points_inside(region, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Which points (x, y) lie inside a shapely geometry (on its border counts as inside)."""
    import shapely

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if region is None or region.is_empty or not len(x):
        return np.zeros(len(x), bool)
    shapely.prepare(region)
    return shapely.intersects_xy(region, x, y)


def _polygon_mask(geom, shape: tuple[int, int], out: np.ndarray) -> None:
    """Pixels whose centre lies in (or on) ``geom``, marked in ``out`` (the rule that makes an integer box
    polygon give the same pixels as the box itself)."""
    h, w = shape
    x0, y0, x1, y1 = geom.bounds
    c0, r0 = max(int(np.floor(x0 - 0.5)), 0), max(int(np.floor(y0 - 0.5)), 0)
    c1, r1 = min(int(np.ceil(x1 + 0.5)), w), min(int(np.ceil(y1 + 0.5)), h)
    if c1 <= c0 or r1 <= r0:
        return
    import shapely

    shapely.prepare(geom)
    xs = np.arange(c0, c1, dtype=np.float64) + 0.5
    step = max(1, 4_000_000 // len(xs))  # rows at a time: a few million points per call
    for r in range(r0, r1, step):
        rows = np.arange(r, min(r + step, r1), dtype=np.float64) + 0.5
        gx, gy = np.meshgrid(xs, rows)
        out[r:r + len(rows), c0:c1] |= shapely.intersects_xy(geom, gx, gy)


def regions_mask(regions, shape: tuple[int, int]) -> np.ndarray:
    """Union of boxes and polygons as a boolean (H, W) mask; boxes exactly as ``boxes_mask`` draws them,
    polygons by pixel centre."""
    m = np.zeros(shape, bool)
    for r in regions:
        if is_box(r):
            x0, y0, x1, y1 = (int(round(float(v))) for v in r)
            m[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
        else:
            _polygon_mask(r, shape, m)
    return m


def coverage_of_boxes(coords: np.ndarray, size: int, boxes: list, shape: tuple[int, int]) -> tuple[int, int]:
    """(covered, total) pixel area of ``boxes`` (or polygons) that falls inside the patches at ``coords``."""
    cover = np.zeros(shape, bool)
    for x, y in coords:
        cover[y:y + size, x:x + size] = True
    covered = total = 0
    for b in boxes:
        if not is_box(b):
            region = cover[regions_mask([b], shape)]
            covered += int(region.sum())
            total += region.size
            continue
        x0, y0, x1, y1 = (int(round(v)) for v in b)
        x0, y0 = max(x0, 0), max(y0, 0)
        region = cover[y0:y1, x0:x1]
        covered += int(region.sum())
        total += region.size
    return covered, total

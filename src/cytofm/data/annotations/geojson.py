"""QuPath's GeoJSON, both ways: tiles, annotations and cells written so that QuPath imports them, and the
regions of a QuPath export read back as shapely geometries in level-0 pixels.

Cytopathologists review slides in QuPath, which reads and writes this format (File > Export objects as
GeoJSON; File > Import objects): a ``Feature`` per object with its geometry (pixels, origin at the top-left
of the full-resolution image) and ``properties`` holding ``objectType``, ``name``, ``classification``
(``{"name", "color": [r, g, b]}``) and ``measurements`` (an object of numbers). A cell carries its nucleus
as a second geometry, ``nucleusGeometry``, a member of the Feature beside ``geometry``.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cytofm.utils.errors import InputError
from cytofm.utils.io import atomic_path

# QuPath's object types, with the names its older exports used (v0.2 put the Java class in "id")
OBJECT_TYPES = {
    "annotation": "annotation", "PathAnnotationObject": "annotation",
    "detection": "detection", "PathDetectionObject": "detection",
    "cell": "cell", "PathCellObject": "cell",
    "tile": "tile", "PathTileObject": "tile",
    "tmaCore": "tmaCore", "tma_core": "tmaCore", "TMACoreObject": "tmaCore",
}
QUPATH_TYPES = tuple(dict.fromkeys(OBJECT_TYPES.values()))
REGION_GEOMETRIES = ("Polygon", "MultiPolygon", "GeometryCollection")
_ID_NAMESPACE = uuid.UUID("6f1d3a52-52c1-4c55-9a53-2f0c6b7e1a01")  # cytofm's: ids stable per content
_PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
            (240, 50, 230), (210, 245, 60), (0, 128, 128), (170, 110, 40), (128, 0, 0), (0, 0, 128))


class GeoJSONError(InputError):
    """A file that is not GeoJSON a cytofm command can read (not JSON, or no Features in it)."""


@dataclass
class Annotation:
    """One region of a GeoJSON file: a polygonal shapely geometry in level-0 pixels and what QuPath says
    of it."""

    geometry: object  # shapely Polygon or MultiPolygon
    classification: str | None = None  # a derived class as QuPath shows it: "Tumor: Positive"
    object_type: str = "annotation"
    name: str | None = None
    color: tuple[int, int, int] | None = None  # the classification's colour
    measurements: dict[str, float] = field(default_factory=dict)
    nucleus: object | None = None  # a cell's nucleus geometry


# ---- writing -----------------------------------------------------------------------------------------


def class_color(name: str) -> tuple[int, int, int]:
    """A colour for a class name that is the same in every file (QuPath colours a class by its first use)."""
    return _PALETTE[int(uuid.uuid5(_ID_NAMESPACE, name)) % len(_PALETTE)]


def _numeric(v) -> bool:
    """A Python or numpy number (not a bool, not a string)."""
    return not isinstance(v, bool | str | bytes) and (isinstance(v, int | float) or hasattr(v, "__float__"))


def _number(v, what: str) -> int | float:
    """A plain JSON number; integral values as ints, which keeps pixel coordinates short."""
    if not _numeric(v):
        raise TypeError(f"{what}: {v!r} is not a number")
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"{what}: {f} is not finite (JSON has no NaN or infinity)")
    return int(f) if f.is_integer() and abs(f) < 2 ** 53 else f


def _measurements(values: Mapping[str, float] | None) -> dict[str, int | float]:
    """Plain numbers; NaN and infinities are left out: JSON has none, and QuPath shows a measurement an
    object lacks as NaN, so leaving one out says the same thing."""
    out: dict[str, int | float] = {}
    for k, v in (values or {}).items():
        if not _numeric(v):
            raise TypeError(f"measurement {k!r}: {v!r} is not a number")
        if math.isfinite(float(v)):
            out[str(k)] = _number(v, f"measurement {k!r}")
    return out


def _classification(c) -> dict | None:
    if c is None:
        return None
    name, color = (c, class_color(c)) if isinstance(c, str) else c
    rgb = [int(_number(v, f"colour of {name!r}")) for v in color]
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise ValueError(f"colour of {name!r}: {list(color)} is not three values in 0..255")
    return {"name": str(name), "color": rgb}


def _coordinates(c, what: str):
    if isinstance(c, list | tuple) and c and isinstance(c[0], list | tuple):
        return [_coordinates(p, what) for p in c]
    return [_number(v, what) for v in c]


def _geometry_json(geometry) -> dict:
    """A shapely geometry as a GeoJSON geometry object with plain lists and numbers."""
    from shapely.geometry import mapping

    if geometry is None or geometry.is_empty:
        raise ValueError("an empty geometry cannot be written (QuPath needs a region)")
    m = mapping(geometry)
    if m["type"] == "GeometryCollection":
        return {"type": m["type"], "geometries": [_geometry_json(g) for g in geometry.geoms]}
    return {"type": m["type"], "coordinates": _coordinates(m["coordinates"], f"{m['type']} coordinate")}


def _feature(geometry: dict, object_type: str, name: str | None, classification, measurements,
             nucleus: dict | None = None) -> dict:
    if object_type not in QUPATH_TYPES:
        raise ValueError(f"objectType {object_type!r}: QuPath's are {', '.join(QUPATH_TYPES)}")
    props: dict = {"objectType": object_type}
    if name:
        props["name"] = str(name)
    cls = _classification(classification)
    if cls:
        props["classification"] = cls
    meas = _measurements(measurements)
    if meas:
        props["measurements"] = meas
    content = json.dumps([geometry, nucleus, props], sort_keys=True)
    f = {"type": "Feature", "id": str(uuid.uuid5(_ID_NAMESPACE, content)), "geometry": geometry}
    if nucleus is not None:
        f["nucleusGeometry"] = nucleus  # where QuPath writes it: beside "geometry", not in properties
    f["properties"] = props
    return f


def tile_feature(x: float, y: float, w: float, h: float, measurements: Mapping[str, float] | None = None,
                 classification: tuple[str, tuple[int, int, int]] | str | None = None,
                 object_type: str = "tile") -> dict:
    """A patch as a QuPath tile: the rectangle (x, y, w, h) in level-0 pixels as a closed Polygon ring.

    ``classification``: (name, (r, g, b)), or a name alone (its colour from :func:`class_color`).
    Measurements must be numbers; NaN and infinities are left out (JSON has none, and QuPath shows a
    measurement an object lacks as NaN).
    """
    if not (float(w) > 0 and float(h) > 0):
        raise ValueError(f"tile at ({x}, {y}): width and height must be positive, not {w} x {h}")
    ring = [[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]]
    geometry = {"type": "Polygon", "coordinates": [_coordinates(ring, "tile coordinate")]}
    return _feature(geometry, object_type, None, classification, measurements)


def annotation_feature(geometry, name: str | None = None,
                       classification: tuple[str, tuple[int, int, int]] | str | None = None,
                       measurements: Mapping[str, float] | None = None) -> dict:
    """A shapely geometry (level-0 pixels) as a QuPath annotation."""
    return _feature(_geometry_json(geometry), "annotation", name, classification, measurements)


def cell_feature(cell_geometry, nucleus_geometry=None,
                 classification: tuple[str, tuple[int, int, int]] | str | None = None,
                 measurements: Mapping[str, float] | None = None) -> dict:
    """A QuPath cell: its outline as ``geometry``, its nucleus (when known) as ``nucleusGeometry``."""
    nucleus = None if nucleus_geometry is None else _geometry_json(nucleus_geometry)
    return _feature(_geometry_json(cell_geometry), "cell", None, classification, measurements, nucleus)


def write_feature_collection(path: str | os.PathLike, features: Iterable[dict],
                             image: str | None = None) -> Path:
    """A ``FeatureCollection`` written atomically. Ids are made the image's (``image``, default the file's
    stem, which names the image): objects of the same content on two images tiled alike (every tile of a
    grid) would otherwise share ids across a project. A repeated id in the file (two objects of the same
    content) is replaced, since QuPath takes an id for one object. Both stay deterministic."""
    scope = Path(path).stem if image is None else str(image)
    out, seen = [], set()
    for k, f in enumerate(features):
        if "id" in f:
            f = {**f, "id": str(uuid.uuid5(_ID_NAMESPACE, f"{scope}/{f['id']}"))}
        if f.get("id") in seen:
            f = {**f, "id": str(uuid.uuid5(_ID_NAMESPACE, f"{f['id']}/{k}"))}
        seen.add(f.get("id"))
        out.append(f)
    text = json.dumps({"type": "FeatureCollection", "features": out}, allow_nan=False,
                      separators=(",", ":"))
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return Path(path)


# ---- reading -----------------------------------------------------------------------------------------


def geojson_for(folder: str | os.PathLike, source: str | os.PathLike) -> Path | None:
    """The GeoJSON of ``source`` in ``folder``: ``<stem>.geojson`` or ``<stem>.json``, or with the whole file
    name (``slide.svs.geojson``, as QuPath scripts that append to the image name write it); None if none."""
    p = Path(source)
    for base in dict.fromkeys((p.stem, p.name)):
        for ext in (".geojson", ".json"):
            q = Path(folder) / f"{base}{ext}"
            if q.is_file():
                return q
    return None


def _load(path: Path):
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise GeoJSONError(f"{path}: cannot read ({(e.strerror or str(e)).lower()})") from None
    except UnicodeDecodeError:
        raise GeoJSONError(f"{path}: not a text file (GeoJSON is UTF-8 JSON)") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise GeoJSONError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None


def _features_of(doc, path: Path) -> list:
    """The Features of any of QuPath's three export shapes: a FeatureCollection, a bare list, one Feature."""
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        kind = doc.get("type")
        if kind == "FeatureCollection":
            if not isinstance(doc.get("features"), list):
                raise GeoJSONError(f"{path}: a FeatureCollection without a 'features' list")
            return doc["features"]
        if kind == "Feature" or "geometry" in doc:
            return [doc]
        if isinstance(kind, str):
            raise GeoJSONError(f"{path}: a bare {kind}, not Features; export objects from QuPath "
                               "(File > Export objects as GeoJSON) or wrap the geometry in a Feature")
    what = (f"a JSON object with keys {sorted(doc)[:5]}" if isinstance(doc, dict)
            else f"a JSON {type(doc).__name__}")
    raise GeoJSONError(f"{path}: not GeoJSON: expected a FeatureCollection, a list of Features or one "
                       f"Feature, found {what}")


def _object_type(f: dict, props: dict) -> str:
    """QuPath's rule: ``objectType``, else the older ``object_type``, else ``type``, else the v0.2 class
    name in ``id``; none at all is an annotation (what QuPath makes of an imported feature)."""
    for key in ("objectType", "object_type", "type"):
        if key in props:
            return props[key] if isinstance(props[key], str) else repr(props[key])
    legacy = f.get("id")
    return OBJECT_TYPES.get(legacy, "annotation") if isinstance(legacy, str) else "annotation"


def _read_class(value, notes: Counter) -> tuple[str | None, tuple[int, int, int] | None]:
    """``{"name", "color"}`` (QuPath 0.4+), ``{"name", "colorRGB"}`` (packed, older), ``{"names": [...]}``
    (a derived class, shown "A: B"); a plain string is read as the name, with a note."""
    if value is None:
        return None, None
    if isinstance(value, str):
        notes["classification given as a plain string (QuPath writes {name, color}); read as the name"] += 1
        return value or None, None
    if not isinstance(value, dict):
        notes[f"classification {value!r} is neither an object nor a name; read as unclassified"] += 1
        return None, None
    names = value.get("names")
    name = ": ".join(map(str, names)) if isinstance(names, list) and names else value.get("name")
    color = value.get("color")
    rgb = None
    if isinstance(color, list) and len(color) == 3 and all(isinstance(v, int | float) for v in color):
        rgb = tuple(int(v) for v in color)
    elif isinstance(value.get("colorRGB"), int):
        c = value["colorRGB"] & 0xFFFFFF
        rgb = (c >> 16 & 255, c >> 8 & 255, c & 255)
    return (str(name) if name else None), rgb


def _read_measurements(value) -> dict[str, float]:
    """An object of numbers (QuPath 0.4+) or a list of {name, value} (older); non-numbers and non-finite
    values left out (QuPath shows a missing measurement as NaN)."""
    pairs = value.items() if isinstance(value, dict) else (
        ((m.get("name"), m.get("value")) for m in value if isinstance(m, dict)) if isinstance(value, list)
        else ())
    return {str(k): float(v) for k, v in pairs
            if k is not None and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


def _numbers_only(c) -> bool:
    """Nested lists whose innermost lists are positions: two or three finite numbers."""
    if not isinstance(c, list) or not c:
        return False
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in c):
        return len(c) in (2, 3) and all(math.isfinite(v) for v in c)
    return all(_numbers_only(p) for p in c)


def _read_region(g, notes: Counter) -> object | str:
    """A polygonal shapely geometry from a GeoJSON geometry, or why it is not one (the skip reason).

    Self-intersecting polygons are repaired with ``shapely.make_valid`` (with a note) when area remains.
    """
    import shapely
    from shapely.geometry import shape

    if not isinstance(g, dict) or not isinstance(g.get("type"), str):
        return "no geometry"
    kind = g["type"]
    if kind not in REGION_GEOMETRIES:
        return f"a {kind} is not a region (points and lines have no area)"
    if kind != "GeometryCollection" and not _numbers_only(g.get("coordinates")):
        return f"{kind} coordinates are not lists of [x, y] numbers"
    try:
        geom = shape(g)
    except Exception as e:  # shapely's errors for malformed rings (too few points, ...)
        return f"{kind} cannot be read ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    if not geom.is_valid:
        why = shapely.is_valid_reason(geom)
        geom = shapely.make_valid(geom)
        if _polygonal(geom).area <= 0:
            return f"invalid {kind} ({why}) with no area left after repair"
        notes[f"invalid {kind} repaired with shapely.make_valid ({why.split('[')[0].strip()})"] += 1
    geom = _polygonal(geom)
    return geom if not geom.is_empty and geom.area > 0 else f"{kind} without area"


def _polygonal(geom):
    """The polygons of a geometry (a repair or a GeometryCollection can hold lines and points too)."""
    import shapely

    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [p for p in getattr(geom, "geoms", []) if p.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def _read_feature(f, notes: Counter) -> Annotation | str:
    if not isinstance(f, dict):
        return "not a JSON object"
    props = f.get("properties") if f.get("properties") is not None else {}
    if not isinstance(props, dict):
        return "'properties' is not an object"
    kind = _object_type(f, props)
    if kind in ("root", "PathRootObject"):
        return "a root object has no region"
    if kind not in OBJECT_TYPES:
        return f"unknown objectType {kind!r} (QuPath's: {', '.join(QUPATH_TYPES)})"
    geom = _read_region(f.get("geometry"), notes)
    if isinstance(geom, str):
        return geom
    cls, rgb = _read_class(props.get("classification"), notes)
    nucleus = None
    if OBJECT_TYPES[kind] == "cell" and f.get("nucleusGeometry") is not None:
        nucleus = _read_region(f["nucleusGeometry"], notes)
        if isinstance(nucleus, str):
            notes[f"nucleus left out: {nucleus}"] += 1
            nucleus = None
    name = props.get("name") if isinstance(props.get("name"), str) else None
    return Annotation(geom, cls, OBJECT_TYPES[kind], name, rgb, _read_measurements(props.get("measurements")),
                      nucleus)


def read_annotations(path: str | os.PathLike, log=print) -> list[Annotation]:
    """The regions of a QuPath GeoJSON export (a FeatureCollection, a list of Features, or one Feature).

    Follows QuPath's own reading: the object type from ``properties.objectType`` (or the older
    ``object_type``, ``type``, or a v0.2 class name in ``id``), and a feature with none is an annotation;
    ``classification`` as ``{name, color}``, ``{name, colorRGB}`` or ``{names: [...]}``. Two choices
    differ from QuPath, each logged once per file with a count: a plain-string classification (which QuPath
    does not write) is read as the class name, and an unknown object type is skipped (QuPath would make
    it an annotation, but a type it does not know comes from another tool and may not be a region).
    Points and lines are skipped (no area), as are root objects and features whose geometry cannot be
    read; self-intersecting polygons are repaired (``shapely.make_valid``) when area remains. A file that
    is not JSON, or not GeoJSON Features, raises :class:`GeoJSONError` naming it.
    """
    path = Path(path)
    features = _features_of(_load(path), path)
    out: list[Annotation] = []
    skipped: Counter = Counter()
    notes: Counter = Counter()
    for f in features:
        a = _read_feature(f, notes)
        if isinstance(a, str):
            skipped[a] += 1
        else:
            out.append(a)
    for why, n in skipped.items():
        log(f"note: {path}: skipped {n} of {len(features)} feature(s): {why}")
    for what, n in notes.items():
        log(f"note: {path}: {n} feature(s): {what}")
    return out

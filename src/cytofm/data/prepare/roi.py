"""Regions of interest of ``prepare --roi``: QuPath annotations that limit a source's patches to the
regions a pathologist outlined (one GeoJSON file for one source, or a folder of ``<stem>.geojson``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cytofm.data.annotations.geojson import GeoJSONError, geojson_for, read_annotations
from cytofm.data.sources.inputs import Skip, SourceItem
from cytofm.utils.errors import InputError
from cytofm.utils.hashing import file_digest


@dataclass
class Roi:
    """A source's regions of interest (``tiling.roi``): the union of a GeoJSON file's annotations."""

    geometry: object  # shapely, level-0 pixels
    path: Path
    digest: str  # of the file: a changed outline re-tiles the source on resume


def read_roi(path: Path, log=print) -> Roi | str:
    """The annotation regions of a QuPath GeoJSON file as one :class:`Roi`, or why there are none."""
    import shapely

    try:
        regions = [a.geometry for a in read_annotations(path, log) if a.object_type == "annotation"]
    except GeoJSONError as e:
        return str(e)
    if not regions:
        return f"ROI file {path} has no annotation with an area (objectType annotation, a polygon)"
    return Roi(shapely.union_all(regions), path, file_digest(path)[1])


def match_rois(items: list[SourceItem], roi: str | None, skips: list[Skip], log) -> tuple[list, dict]:
    """Each source's :class:`Roi`: one file for a single source, or ``<stem>.geojson`` in a folder, where a
    source without its file (or with an unusable one) is skipped: outlined regions mean only those."""
    if not roi:
        return items, {}
    folder = Path(roi)
    if not folder.exists():
        raise InputError(f"--roi {roi}: no such file or folder")
    if not folder.is_dir():
        if len(items) > 1:
            raise InputError(f"--roi {roi}: one GeoJSON file outlines one source, but {len(items)} were "
                             "found; give a folder of <stem>.geojson files (one per source)")
        r = read_roi(folder, log)
        if isinstance(r, str):
            raise InputError(f"--roi: {r}")
        return items, {it.id: r for it in items}
    kept, rois = [], {}
    for it in items:
        f = geojson_for(folder, it.path)
        r = read_roi(f, log) if f is not None else (f"no ROI file {Path(it.path).stem}.geojson in {folder} "
                                                    "(with an ROI folder, sources without one are left out)")
        if isinstance(r, str):
            skips.append(Skip(str(it.path), r))
        else:
            kept.append(it)
            rois[it.id] = r
    return kept, rois

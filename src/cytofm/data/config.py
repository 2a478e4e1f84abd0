"""Typed config of ``cytofm prepare``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cytofm.config.loader import Section


class ForegroundConfig(Section):
    method: Literal["od+saturation", "od", "saturation", "none"] = "od+saturation"
    """Which cues mark a pixel as stained material; ``none`` keeps every patch."""
    od_threshold: float | None = Field(0.06, ge=0)
    """Optical density above the image's own background that counts as stain; ``null`` = Otsu
    on the image, floored at ``od_min`` (Otsu splits nuclei from cytoplasm when glass is scarce)."""
    od_min: float = Field(0.06, ge=0)
    sat_threshold: float | None = Field(0.12, ge=0, le=1)
    """Chroma above which a pixel counts as stained; ``null`` = Otsu floored at ``sat_min``."""
    sat_min: float = Field(0.12, ge=0, le=1)
    min_background: float = Field(200.0, ge=0, le=255)
    """Lowest intensity accepted as empty glass (protects crops filled by one cell)."""
    close_px: int = Field(3, ge=0)
    """Closing radius at the mask's working scale."""
    min_object_px: int = Field(30, ge=0)
    """Connected components smaller than this (mask pixels) are dust, not cells."""
    mask_max_side: int = Field(2048, ge=64)
    """The mask is computed on a copy no larger than this (whole slides: a thumbnail)."""
    min_fraction: float = Field(0.05, ge=0, le=1)
    """Patches (and whole images) with less foreground than this are dropped."""


class TilingConfig(Section):
    mode: Literal["tiles", "whole"] = "tiles"
    """``tiles``: a grid of patches; ``whole``: every image is one instance (single-cell crops)."""
    patch_size: int = Field(224, ge=8)
    """Patch side in pixels at the target resolution."""
    stride: int | None = Field(None, ge=1)
    """Step between patches at the target resolution; ``null`` = ``patch_size`` (no overlap)."""
    edge: Literal["shift", "drop"] = "shift"
    """``shift`` adds a last row/column flush with the border so the whole image is covered."""
    keep_small_whole: bool = True
    """Images smaller than one patch become one whole instance instead of being skipped."""
    min_side: int = Field(16, ge=1)
    """Images with a side below this are refused as unusable."""
    roi: str | None = None
    """Regions of interest drawn in QuPath: a GeoJSON file (one input source) or a folder of
    ``<stem>.geojson`` / ``<stem>.json`` files (QuPath's export, File > Export objects as GeoJSON). Only
    patches whose centre lies inside one of its annotations (objectType ``annotation``; detections,
    cells and tiles do not outline regions) are kept. With a folder, a source without its file is
    skipped (in ``skipped.csv``): outlined regions mean only those are wanted."""


class ResolutionConfig(Section):
    mpp: float | None = Field(None, gt=0)
    """Microns per pixel of plain images that have no ``mpp`` column (slides carry their own)."""
    target_mpp: float | None = Field(None, gt=0)
    """Resample every source to this resolution; needs a known source ``mpp``."""
    target_magnification: float | None = Field(None, gt=0)
    """Alternative to ``target_mpp`` (converted as mpp = 10 / magnification)."""

    @model_validator(mode="after")
    def _one_target(self):
        if self.target_mpp is not None and self.target_magnification is not None:
            raise ValueError("give target_mpp or target_magnification, not both")
        return self

    @property
    def target(self) -> float | None:
        if self.target_mpp is not None:
            return self.target_mpp
        if self.target_magnification is not None:
            return 10.0 / self.target_magnification
        return None


class MetadataConfig(Section):
    labels_from_folders: bool = False
    """Folder input: the first sub-folder under INPUT becomes the ``label`` column."""
    label_column: str | None = None
    """Manifest input: the column copied into ``label`` (e.g. ``wbc_type``)."""
    organ: str | None = None
    preparation: str | None = None
    stain: str | None = None
    dataset: str | None = None
    """Defaults for every source lacking these columns (e.g. ``organ=breast stain=pap``)."""
    duplicates: Literal["refuse", "first", "drop"] = "refuse"
    """Manifest rows naming the same file with different values: refuse the manifest, keep the first
    row, or leave the file out. Identical repeated rows are always merged with a note."""


class OutputConfig(Section):
    qa_thumbnails: int = Field(16, ge=-1)
    """QA thumbnails with kept patches outlined: this many sources, evenly sampled (-1 = all)."""
    materialize: Literal["none", "png", "jpeg", "webdataset"] = "none"
    """Also write the kept patches as image files or webdataset tar shards."""
    shard_size: int = Field(1000, ge=1)
    workers: int = Field(0, ge=0)
    """Worker processes; 0 = one per CPU core (at most 8)."""
    resume: bool = True
    """Reuse sources already prepared with the same config (and unchanged files)."""
    geojson: bool = False
    """Also write ``geojson/<id>.geojson``: each kept patch as a QuPath tile (level-0 pixels) with its
    foreground fraction, to review the tiling in QuPath (File > Import objects)."""


class PrepareConfig(Section):
    tiling: TilingConfig = TilingConfig()
    foreground: ForegroundConfig = ForegroundConfig()
    resolution: ResolutionConfig = ResolutionConfig()
    metadata: MetadataConfig = MetadataConfig()
    output: OutputConfig = OutputConfig()

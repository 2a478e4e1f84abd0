"""Typed config of ``cytofm prepare``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from cytofm.config.loader import Section
from cytofm.data.cells.registry import CELL_DETECTORS


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
    focus: Literal["images", "all", "none"] = "images"
    """Score every kept patch's focus (``cytofm.data.prepare.focus``: 0.73 for a step edge at pixel
    sharpness, 0.2
    at a 2 px blur, unchanged by the amount of stain; 0 and marked blank without stain structure), read as
    it is embedded; stored in ``coords/<id>.h5`` (``focus``, ``focus_blank``) and the manifest. ``images``:
    sources decoded whole (fields, crops: about 0.6-0.75x the tiling rate); ``all``: slides and images read
    in regions too, where every kept patch is read once more (about 10 MP/s on two cores against ~800 for
    tiling alone); ``none``: no score."""
    min_focus: float | None = Field(None, ge=0)
    """Drop patches whose focus is below this (``null``: keep every one; needs ``focus``)."""


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


class CellsConfig(Section):
    """Cell detection (``prepare --cells``, presets ``smear_cells`` and ``pap_cells``). Sizes are in
    micrometres, so detection needs each source's um/px (a slide's own, ``resolution.mpp`` or an ``mpp``
    column)."""

    enabled: bool = False
    detector: Annotated[str, AfterValidator(CELL_DETECTORS.validate)] = "watershed"
    """A name of ``cytofm.data.cells.registry.CELL_DETECTORS``."""
    weights: str | None = None
    """A learned detector's weights file or folder (else looked for under ``$CYTOFM_CELL_WEIGHTS``)."""
    stain: Literal["giemsa", "pap", "estimate"] = "giemsa"
    """Stain vectors for the nucleus and the other channel: Romanowsky/Giemsa, Papanicolaou, or estimated
    per image (Macenko) where fixed vectors do not fit."""
    min_diameter_um: float = Field(4.0, gt=0)
    """Objects smaller than a disk of this diameter are debris (platelets, dust), not cells."""
    typical_diameter_um: float = Field(7.5, gt=0)
    """The commonest cell's diameter: sets how far apart two touching cells' centres must be to split."""
    max_diameter_um: float = Field(25.0, gt=0)
    """Larger pieces are flagged as clumps; also the overlap between regions of a large image."""
    clump_cells: float = Field(50.0, gt=1)
    """A connected object over this many typical cells is split like any other, and kept whole as one
    clump only where most of its area split into irregular pieces (nothing cell-shaped in it)."""
    min_solidity: float = Field(0.75, ge=0, le=1)
    """Pieces less convex than this after splitting are flagged as clumps (irregular overlaps)."""
    od_threshold: float | None = Field(None, ge=0)
    """A cap on the cut of summed optical density (R + G + B) above the image's own glass that counts as a
    cell; ``null`` (the default): Otsu's cut of each image, which moves with the stain, so a darker or paler
    stain gives the same cells (a fixed 0.15 joined white cells to their red neighbours under a 1.6x
    darker stain). A cap lowers the cut on dark fields, for the one stain it was set for."""
    od_min: float = Field(0.08, ge=0)
    """Floor of Otsu's threshold: blank glass stays blank."""
    min_background: float = Field(60.0, ge=0, le=255)
    """Lowest brightness accepted as the glass: camera fields are often darker or tinted (chula_rbc12's
    glass is (110, 131, 148)), and a field is never one cell here, so lower than ``foreground``'s 200."""
    nuclei: Literal["colour", "stain"] = "colour"
    """How nuclei are told from the rest: ``colour``, by the image's own chromatin colour (the stained
    pixels cut in two by their relative red absorption; ``cytofm.data.cells.nuclei``), falling back to the
    stain vectors where the image holds no second colour; ``stain``, by the stain vectors alone."""
    nucleus_min_separation: float = Field(0.2, ge=0, le=2)
    """The two colours must differ by this much in relative red absorption, (OD_R - OD_B) / OD_sum, for
    the image to be believed to hold nuclei of its own colour (red cells among themselves differ by a few
    hundredths)."""
    nucleus_max_share: float = Field(0.5, gt=0, le=1)
    """Nuclei are believed found by colour only where they are at most this share of the stained pixels:
    in a smear they are a minority (BCCD: 10-20%), and where the red-absorbing side is the majority the cut
    fell inside one population (the stain vectors decide there). Pap crops of one cell: ``pap_cells``."""
    nucleus_od_min: float = Field(0.25, ge=0)
    """Floor of the nuclear-stain threshold: a cell without a nucleus (a red cell) gets none."""
    min_nucleus_um2: float = Field(3.0, ge=0)
    nucleus_join_um: float = Field(1.5, ge=0)
    """Nuclear fragments closer than twice this are one nucleus (the lobes of a neutrophil's)."""
    nucleus_reach_um: float = Field(3.0, ge=0)
    """No other cell is seeded this close to a nucleus: that is its own cytoplasm (a white cell's reaches
    3-4 um past its nucleus; a squamous cell's 15 um or more)."""
    cytoplasm_reach_um: float = Field(3.0, gt=0)
    """A nucleated cell ends this far from its nucleus: beyond, what its seed flooded is the anucleate
    cells it touches (red cells), split on their own. A white cell's cytoplasm reaches 3-4 um past its
    nucleus; a squamous cell's 20 um or more (``pap_cells``)."""
    cytoplasm_fraction: float = Field(0.5, gt=0, le=1)
    """Within ``cytoplasm_reach_um`` of a nucleus, pixels above this fraction of the image's two-class
    (dense) cut are its cell's (pale cytoplasm); elsewhere the cuts of ``cell_cuts`` apply."""
    work_mpp: float = Field(0.25, gt=0)
    """Detection runs at this resolution (or the source's, if coarser): cells are several micrometres,
    and finer pixels cost time without changing the objects."""
    region_px: int = Field(2048, ge=256)
    """Large images are detected region by region of this side (working pixels), with overlap."""
    contour_tolerance_px: float = Field(0.75, ge=0)
    """Contours are simplified (Douglas-Peucker) to within this many working pixels."""

    @model_validator(mode="after")
    def _ordered(self):
        if not self.min_diameter_um <= self.typical_diameter_um <= self.max_diameter_um:
            raise ValueError("cell diameters must satisfy min_diameter_um <= typical_diameter_um <= "
                             "max_diameter_um")
        return self


def _plane_policy(v):
    v = str(v).strip().lower()
    if v in ("best", "edf", "all") or (v.isdigit()):
        return v
    raise ValueError("give best, edf, all or a plane number (0 is the first plane)")


class ZStackConfig(Section):
    z: Annotated[str | int, AfterValidator(_plane_policy)] = "best"
    """Which focal plane of a z-stack (several planes, an OME-TIFF with a z axis) each patch is read from:
    ``best`` the sharpest per patch (by the focus score; recorded per patch as ``z`` in ``coords/<id>.h5``),
    ``edf`` the planes fused by local focus (extended depth of field, seam-free), ``all`` every plane its
    own patch (``z`` recorded), or a plane number. Single-plane sources are unchanged."""
    select: Literal["auto", "bytes", "focus"] = "auto"
    """How ``best`` finds the sharpest plane: ``focus`` scores every plane (exact; decodes every plane, about
    5x the time of one for five), ``bytes`` takes the plane whose compressed tiles are largest (nothing
    decoded but the chosen plane; sound for lossy tiles, JPEG and its kin), ``auto`` bytes for lossy
    tiles, focus otherwise."""


class PrepareConfig(Section):
    tiling: TilingConfig = TilingConfig()
    foreground: ForegroundConfig = ForegroundConfig()
    resolution: ResolutionConfig = ResolutionConfig()
    metadata: MetadataConfig = MetadataConfig()
    output: OutputConfig = OutputConfig()
    cells: CellsConfig = CellsConfig()
    zstack: ZStackConfig = ZStackConfig()

"""``cytofm prepare``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cytofm.cli.common import (
    command_line,
    console,
    fail,
    info,
    make_progress,
    split_overrides,
    user_errors,
)
from cytofm.config.loader import list_presets
from cytofm.data.cells.registry import CELL_DETECTORS

PRESETS = ", ".join(list_presets("prepare"))
"""The presets offered in --help, from the YAML files shipped (src/cytofm/config/presets/prepare/), so a
new one is listed without editing the help."""


@user_errors
def prepare(
    ctx: typer.Context,
    inputs: Annotated[list[str], typer.Argument(
        help="A folder of images/slides, a CSV manifest (path + label, organ, preparation, stain, specimen, "
             "split, mpp...), or slide/image files; then optional key=value config overrides.",
        show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output dataset folder.")],
    preset: Annotated[str, typer.Option(help=f"Config preset ({PRESETS}) or a YAML file.")] = "default",
    config: Annotated[Path | None, typer.Option(help="YAML config file applied after the preset.")] = None,
    patch_size: Annotated[int | None, typer.Option(help="Patch side in pixels at "
                                                        "the target resolution.")] = None,
    stride: Annotated[int | None, typer.Option(help="Patch step (default: patch size).")] = None,
    whole: Annotated[bool, typer.Option("--whole", help="Each image is one instance "
                                                        "(single-cell crops).")] = False,
    mpp: Annotated[float | None, typer.Option(help="Microns per pixel of plain "
                                                   "images without an mpp column.")] = None,
    target_mpp: Annotated[float | None, typer.Option(help="Resample to this resolution (um/px).")] = None,
    magnification: Annotated[float | None, typer.Option(help="Resample to this magnification "
                                                             "(mpp = 10 / mag).")] = None,
    labels_from_folders: Annotated[bool, typer.Option(
        "--labels-from-folders",
        help="Folder input: class sub-folders become the label column.")] = False,
    label_column: Annotated[str | None, typer.Option(help="Manifest column copied into 'label'.")] = None,
    organ: Annotated[str | None, typer.Option(help="Organ for sources lacking one "
                                                   "(breast, cervix, thyroid, blood...).")] = None,
    preparation: Annotated[str | None, typer.Option(help="Preparation (smear, "
                                                         "LBC, FNA, cytospin...).")] = None,
    stain: Annotated[str | None, typer.Option(help="Stain (pap, giemsa, diff-quik, he...).")] = None,
    materialize: Annotated[str | None, typer.Option(help="Also write patches: "
                                                         "png, jpeg or webdataset.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (0 = one per core).")] = None,
    qa: Annotated[int | None, typer.Option(help="Number of QA thumbnails (-1 = all).")] = None,
    duplicates: Annotated[str | None, typer.Option(help="Manifest rows naming one file with "
                                                        "different values: refuse (default), "
                                                        "first (keep the first row) or drop.")] = None,
    roi: Annotated[Path | None, typer.Option(help="Regions drawn in QuPath: a GeoJSON file (one source) or a "
                                                  "folder of <stem>.geojson files; only patches centred in "
                                                  "an annotation are kept, and with a folder sources "
                                                  "without a file are skipped.", show_default=False)] = None,
    geojson: Annotated[bool, typer.Option("--geojson", help="Also write OUT/geojson/<id>.geojson: the kept "
                                                            "patches as QuPath tiles (foreground fraction) "
                                                            "to review in QuPath.")] = False,
    cells: Annotated[bool, typer.Option(
        "--cells", help="Also find and measure every cell (needs um/px): OUT/cells/<id>.h5 and "
                        "OUT/cells.csv; presets smear_cells, pap_cells carry typical sizes.")] = False,
    cell_detector: Annotated[str | None, typer.Option(
        help=f"Cell detector (default watershed): {CELL_DETECTORS.help()}.", show_default=False)] = None,
    z: Annotated[str | None, typer.Option(
        "--z", help="Z-stacks (several focal planes): best (default: each patch's sharpest plane, "
                    "recorded), edf (planes fused by local focus), all (each plane its own patch) or a "
                    "plane number. Single-plane sources are unchanged.", show_default=False)] = None,
) -> None:
    """Find cell-bearing foreground and tile images, fields and whole slides into patch coordinates.

    Writes OUT/manifest.csv (one row per source with its metadata), OUT/coords/<id>.h5 (level-0 patch
    coordinates), OUT/skipped.csv (unusable files and why), QA thumbnails in OUT/qa and OUT/config.yaml;
    with --geojson also OUT/geojson/<id>.geojson for QuPath (File > Import objects); with --cells
    OUT/cells/<id>.h5 and OUT/cells.csv (centre, box, outlines, morphometrics of every cell).
    Unreadable files are skipped and recorded; the exit status is non-zero only when nothing is usable.

    Examples:

        cytofm prepare fields/ --out prepared --labels-from-folders --stain giemsa

        cytofm prepare manifest.csv --out prepared --target-mpp 0.5 tiling.patch_size=256

        cytofm prepare slides/*.svs --out prepared --preset wsi

        cytofm prepare slides/ --out prepared --roi qupath_export/ --geojson

        cytofm prepare zstacks/ --out prepared --z edf
    """
    from cytofm.data.prepare.options import prepare_config
    from cytofm.data.prepare.run import NothingUsable, run_prepare
    from cytofm.utils.io import check_writable_dir

    paths, overrides = split_overrides(inputs)
    if not paths:
        fail("no INPUT given (a folder, a CSV manifest or image/slide files)")
    cfg = prepare_config(preset, overrides, config, ctx.params)  # each option's key: PREPARE_OPTIONS
    check_writable_dir(out)
    with make_progress() as progress:
        try:
            res = run_prepare(paths, out, cfg, progress=progress, log=info,
                              command=command_line())
        except NothingUsable as e:
            fail(str(e), code=1)
    mps = res.megapixels / max(res.seconds, 1e-9)
    console.print(
        f"[green]prepared[/green] {len(res.rows)} source(s), {res.n_patches} patch(es); "
        f"{len(res.skipped)} skipped; {res.reused} reused; {res.megapixels:.1f} MP in {res.seconds:.1f} s "
        f"({mps:.1f} MP/s) -> {out}/manifest.csv"
    )

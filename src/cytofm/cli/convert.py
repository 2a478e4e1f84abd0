"""``cytofm convert``: feature stores to and from TRIDENT, CLAM and STAMP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cytofm.cli.common import console, fail, user_errors
from cytofm.features.formats.registry import FEATURE_FORMATS

TOOLS = ", ".join(FEATURE_FORMATS.names())


@user_errors
def convert(
    source: Annotated[Path, typer.Argument(help="A cytofm feature store (with --to), or another tool's "
                                                f"feature folder ({TOOLS}; with --from).")],
    out: Annotated[Path, typer.Option(help="Output folder: the tool's layout "
                                           "(--to) or a new cytofm store (--from).")],
    to: Annotated[str | None, typer.Option("--to", help="Write the files this tool reads: "
                                                        f"{FEATURE_FORMATS.help()}.")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="Read this tool's layout into a cytofm "
                                                             f"store: {TOOLS}.")] = None,
    mpp: Annotated[float | None, typer.Option(help="Level-0 um per pixel, for items that do "
                                                   "not record it (STAMP needs micrometres).")] = None,
    table: Annotated[Path | None, typer.Option(help="With --from: CLAM's dataset CSV (case_id, "
                                                    "slide_id, label) or STAMP's slide table (PATIENT, "
                                                    "FILENAME); default: the one in the folder.")] = None,
) -> None:
    """Convert feature files between cytofm and the tools pathology labs use.

    --to trident: OUT/features_<encoder>/<id>.h5 (coords attrs: patch_size_level0, magnifications, overlap).
    --to clam:    OUT/h5_files/, OUT/pt_files/ (plain tensors), OUT/dataset.csv (case_id, slide_id, label).
    --to stamp:   OUT/<extractor>/<id>.h5 (feats, coords in um), slide_table.csv, clini_table.csv.

    Examples: cytofm convert feats/cytofm --to clam --out clam_feats;
    cytofm convert trident_job/20x_256px_0px_overlap --from trident --out feats/imported
    """
    from cytofm.features.formats.convert import export_store, import_folder

    if (to is None) == (from_ is None):
        fail("give exactly one of --to TOOL (cytofm store -> tool) "
             "or --from TOOL (tool folder -> cytofm store)")
    if mpp is not None and mpp <= 0:
        fail(f"--mpp must be positive, not {mpp}")
    if to is not None:
        d = export_store(source, to, out, mpp)
        console.print(f"[green]converted[/green] {source} -> {d} ({to})")
    else:
        manifest, n = import_folder(source, from_, out, mpp, table)
        console.print(f"[green]converted[/green] {n} {from_} file(s) -> {manifest}")

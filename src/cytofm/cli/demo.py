"""``cytofm demo``: the system end to end on the real sample shipped with the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from cytofm.cli.common import console, fail, make_progress, user_errors


def demo_data_dir() -> Path:
    return Path(str(resources.files("cytofm").joinpath("demo_data")))


@user_errors
def demo(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("cytofm-demo"),
) -> None:
    """Run the pipeline on the shipped BCCD blood-smear sample (MIT licence; see demo_data/bccd/LICENSE).

    Stages available in this version: data preparation (foreground patches, QA thumbnails).
    """
    from cytofm.config.loader import build_config
    from cytofm.data.prepare import NothingUsable, run_prepare
    from cytofm.data.prepare_config import PrepareConfig

    manifest = demo_data_dir() / "bccd" / "manifest.csv"
    if not manifest.is_file():
        fail(f"the demo sample is missing from the installation ({manifest})")
    cfg = build_config(PrepareConfig, "prepare", "smear_fields", values={
        "metadata": {"label_column": "wbc_type", "organ": "blood", "preparation": "smear", "stain": "giemsa",
                     "dataset": "bccd"},
        "output": {"qa_thumbnails": 8},
    })
    with make_progress() as progress:
        try:
            res = run_prepare([str(manifest)], out / "prepared", cfg, progress=progress,
                              log=lambda m: progress.console.print(m, markup=False, soft_wrap=True))
        except NothingUsable as e:
            fail(str(e), code=1)
    console.print(f"[green]demo: prepared[/green] {len(res.rows)} fields -> {res.n_patches} foreground patches "
                  f"({res.megapixels / max(res.seconds, 1e-9):.1f} MP/s)")
    console.print(f"QA thumbnails: {out / 'prepared' / 'qa'}; manifest: {out / 'prepared' / 'manifest.csv'}")

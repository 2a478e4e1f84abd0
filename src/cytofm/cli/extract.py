"""``cytofm extract``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cytofm.cli.common import (
    CONFIG_HELP,
    OVERRIDES_HELP,
    PRINT_CONFIG_HELP,
    choices,
    console,
    default,
    encoder_specs,
    fail,
    info,
    make_progress,
    resolve_settings,
    user_errors,
)
from cytofm.features.config import DEVICES, MODES, POOLS, PRECISIONS, ExtractConfig
from cytofm.models.readouts import READOUTS

Mode = choices("Mode", MODES)
Device = choices("Device", DEVICES)
Precision = choices("Precision", PRECISIONS)
Pool = choices("Pool", POOLS)
C = ExtractConfig


@user_errors
def extract(
    ctx: typer.Context,
    overrides: Annotated[list[str] | None, typer.Argument(help=OVERRIDES_HELP.replace(
        "tiling.patch_size=128 foreground.min_fraction=0.2", "batch_size=32 pool=cls+mean"),
        show_default=False)] = None,
    input: Annotated[Path | None, typer.Option("--input", help="A folder (class sub-folders become "
                                                               "'label'), a manifest, or a `cytofm prepare` "
                                                               "output.", show_default=False)] = None,
    mode: Annotated[Mode | None, typer.Option(help="image: each image is one instance; tiles: "
                                                   "every kept patch is one; cells: every cell of a "
                                                   "folder prepared with --cells is one.",
                                              show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(help="Feature store folder: features/<id>.h5 "
                                                  "+ manifest.csv.", show_default=False)] = None,
    encoder: Annotated[str, typer.Option(help=f"Encoder spec: {encoder_specs()}. Default: "
                                              "the encoder shipped with cytofm.")] = default(C, "encoder"),
    batch_size: Annotated[int, typer.Option(help="Instances per forward pass.")] = default(C, "batch_size"),
    tta: Annotated[bool, typer.Option("--tta", help="Test-time augmentation: mean "
                                                    "over the 8 flips/rotations.")] = default(C, "tta"),
    workers: Annotated[int, typer.Option(help="Data-loading processes.")] = default(C, "workers"),
    label_column: Annotated[str | None, typer.Option(help="Manifest column copied "
                                                          "into 'label'.")] = default(C, "label_column"),
    device: Annotated[Device, typer.Option(help="Where the encoder runs "
                                                "(auto: cuda when available).")] = default(C, "device"),
    precision: Annotated[Precision, typer.Option(help="auto: bf16 "
                                                      "where supported.")] = default(C, "precision"),
    pool: Annotated[Pool, typer.Option(help=f"ViT readout: {READOUTS.help()}. "
                                            "Recorded in the store's encoder spec.")] = default(C, "pool"),
    config: Annotated[Path | None, typer.Option(help=CONFIG_HELP)] = None,
    print_config: Annotated[bool, typer.Option("--print-config", help=PRINT_CONFIG_HELP)] = False,
) -> None:
    """Frozen features from an encoder of the zoo into an h5 feature store (TRIDENT/CLAM layout).

    Finished items are skipped on a re-run; unreadable files are recorded in OUT/skipped.csv.
    Under torchrun, items are split across processes.

    Example: cytofm extract --input cells/ --mode image --out feats pool=cls+mean
    """
    cfg = resolve_settings(ctx, C, config, overrides, print_config,
                           required={"input": "--input PATH", "mode": "--mode image|tiles|cells",
                                     "out": "--out DIR"})
    from cytofm.utils.io import check_writable_dir

    check_writable_dir(cfg.out)
    from cytofm.features.extract import run_extract
    from cytofm.models.encoder import with_pool
    from cytofm.models.zoo import EncoderError, create_encoder
    from cytofm.utils.distributed import torchrun_group

    try:
        enc = create_encoder(cfg.encoder)
        enc = with_pool(enc, cfg.pool)
    except (EncoderError, ValueError) as e:
        fail(str(e))
    with torchrun_group(cfg.device), make_progress() as progress:
        r = run_extract(enc, cfg, progress=progress, log=info)
    console.print(f"[green]extracted[/green] {r['extracted']} item(s) ({r['instances']} instances, "
                  f"{r['instances_per_s']:.1f}/s); {r['reused']} reused; {r['skipped']} skipped "
                  f"-> {cfg.out}/manifest.csv")

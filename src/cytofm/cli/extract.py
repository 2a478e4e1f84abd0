"""``cytofm extract``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cytofm.cli.common import console, fail, make_progress, user_errors


@user_errors
def extract(
    input: Annotated[Path, typer.Option("--input", help="A folder (class sub-folders become 'label'), a manifest, or a `cytofm prepare` output.")],
    mode: Annotated[str, typer.Option(help="image: each image is one instance; tiles: every kept patch is one.")],
    out: Annotated[Path, typer.Option(help="Feature store folder: features/<id>.h5 + manifest.csv.")],
    encoder: Annotated[str, typer.Option(help="Encoder spec: cytofm[:path], cytofm-paper:<path>, ibot-imagenet:<path>, "
                                              "uni:<path>, dinov2:<name|path>, dinobloom:<size>:<path>, phikon:<path>, "
                                              "timm:<model>[:<path>], random:<arch>, handcrafted. Default: the "
                                              "encoder shipped with cytofm.")] = "cytofm",
    batch_size: Annotated[int, typer.Option(help="Instances per forward pass.")] = 64,
    tta: Annotated[bool, typer.Option("--tta", help="Test-time augmentation: mean over the 8 flips/rotations.")] = False,
    workers: Annotated[int, typer.Option(help="Data-loading processes.")] = 1,
    label_column: Annotated[str | None, typer.Option(help="Manifest column copied into 'label'.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto (bf16 where supported), bf16 or fp32.")] = "auto",
    pool: Annotated[str, typer.Option(help="ViT readout: cls ([CLS] token), mean (patch tokens), cls+mean, or last4 "
                                           "([CLS] of the last 4 blocks + patch mean, DINO's linear-evaluation readout). "
                                           "Recorded in the store's encoder spec.")] = "cls",
) -> None:
    """Frozen features from an encoder of the zoo into an h5 feature store (TRIDENT/CLAM layout).

    Finished items are skipped on a re-run; unreadable files are recorded in OUT/skipped.csv.
    Under torchrun, items are split across processes.

    Example: cytofm extract --encoder random:vit_small_patch16_224 --input cells/ --mode image --out feats
    """
    from cytofm.features.extract import run_extract
    from cytofm.models.encoder import POOLS, with_pool
    from cytofm.models.zoo import EncoderError, create_encoder
    from cytofm.utils.distributed import torchrun_group

    if pool not in POOLS:
        fail(f"--pool must be one of {', '.join(POOLS)}, not '{pool}'")
    try:
        enc = create_encoder(encoder)
        enc = with_pool(enc, pool)
    except (EncoderError, ValueError) as e:
        fail(str(e))
    with torchrun_group(device), make_progress() as progress:
        r = run_extract(enc, input, mode, out, batch_size, tta, workers, device, precision, label_column,
                        progress=progress, log=lambda m: progress.console.print(m, markup=False, soft_wrap=True))
    console.print(f"[green]extracted[/green] {r['extracted']} item(s) ({r['instances']} instances, "
                  f"{r['instances_per_s']:.1f}/s); {r['reused']} reused; {r['skipped']} skipped -> {out}/manifest.csv")

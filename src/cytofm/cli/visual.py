"""``cytofm heatmap``, ``cytofm umap`` and ``cytofm report``: visual evidence."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, get_args

import typer

from cytofm.cli.common import (
    CONFIG_HELP,
    PRINT_CONFIG_HELP,
    choices,
    console,
    default,
    fail,
    info,
    make_progress,
    resolve_settings,
    split_overrides,
    user_errors,
)
from cytofm.viz.config import HeatmapConfig, UmapConfig


def _images(inputs: list[str]) -> list[Path]:
    from cytofm.data.sources.image_io import IMAGE_EXTENSIONS

    found: list[Path] = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            found += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file():
            found.append(p)
        else:
            fail(f"{s}: no such file or folder")
    if not found:
        fail(f"no images found in {', '.join(inputs)}")
    return found


def _summary(scores: list[dict], what: str, out: Path) -> None:
    from cytofm.viz.localization import summarise

    s = summarise(scores)
    if s:
        console.print(f"{what} on {s['n']} annotated item(s): mass on object {s['mass']:.3f} "
                      f"(uniform {s['chance_mass']:.3f}), pointing game {s['hit']:.3f} "
                      f"(chance {s['chance_hit']:.3f}); per item: {out}/localization.csv")


H, U = HeatmapConfig, UmapConfig
# the values come from the settings' Literals, so --help and the config accept the same set
Tiles = choices("Tiles", get_args(H.model_fields["tiles"].annotation))
Device = choices("Device", get_args(H.model_fields["device"].annotation))
MapMethod = choices("MapMethod", get_args(U.model_fields["method"].annotation))


@user_errors
def heatmap(
    ctx: typer.Context,
    inputs: Annotated[list[str] | None, typer.Argument(help="Images or folders of images (ViT attention "
                                                            "maps); then optional key=value overrides.",
                                                       show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder for the figures and localization.csv.",
                                             show_default=False)] = None,
    encoder: Annotated[str, typer.Option(help="Encoder spec for ViT attention "
                                              "maps (see `cytofm doctor`).")] = default(H, "encoder"),
    mil: Annotated[Path | None, typer.Option(help="A `cytofm mil` run folder: paint "
                                                  "its ABMIL attention on the sources.")] = None,
    seed: Annotated[int, typer.Option(help="Which seed's out-of-fold "
                                           "attention of the MIL run to paint.")] = default(H, "seed"),
    boxes: Annotated[Path | None, typer.Option(help="Folder of annotations named like the images: "
                                                    "Pascal VOC <stem>.xml boxes and/or QuPath "
                                                    "<stem>.geojson regions; score attention "
                                                    "against them.")] = None,
    box_class: Annotated[str, typer.Option(help="Object class that counts: the VOC object name "
                                                "or the QuPath classification "
                                                "(BCCD: WBC).")] = default(H, "box_class"),
    limit: Annotated[int, typer.Option(help="Draw figures for at most this many "
                                            "images (all annotated ones are scored).")] = default(H, "limit"),
    tiles: Annotated[Tiles, typer.Option(help="auto: fields larger than twice the "
                                              "input size are tiled at native "
                                              "resolution; on; off (resize whole).")] = default(H, "tiles"),
    device: Annotated[Device, typer.Option(help="Where the encoder runs "
                                                "(auto: cuda when available).")] = default(H, "device"),
    config: Annotated[Path | None, typer.Option(help=CONFIG_HELP)] = None,
    print_config: Annotated[bool, typer.Option("--print-config", help=PRINT_CONFIG_HELP)] = False,
) -> None:
    """ViT [CLS] attention maps of images, or ABMIL attention heatmaps of a MIL run, scored against boxes
    or QuPath regions; each map is also written as <name>.geojson (a tile per patch with its attention) to
    import over the image in QuPath.

    Examples:

        cytofm heatmap cells/ --encoder cytofm --out maps

        cytofm heatmap fields/ --boxes annotations/ --out maps limit=24

        cytofm heatmap --mil runs/mil --boxes annotations/ --out maps
    """
    images, overrides = split_overrides(inputs)
    if images:
        ctx.params["inputs"] = images
    else:
        ctx.params.pop("inputs", None)
    cfg = resolve_settings(ctx, H, config, overrides, print_config, {"out": "--out DIR"})
    from cytofm.utils.io import check_writable_dir

    out = check_writable_dir(cfg.out)
    started = time.time()
    skipped: list[str] = []

    def log(m: str) -> None:
        if str(m).startswith("skipped"):
            skipped.append(str(m))
        info(m)
    boxes = Path(cfg.boxes) if cfg.boxes else None
    if boxes is not None and not boxes.is_dir():
        fail(f"--boxes {boxes}: not a folder of VOC XML or QuPath GeoJSON files")
    if cfg.mil is not None:
        _mil_heatmaps(cfg, out, boxes, log)
    else:
        _vit_heatmaps(cfg, out, boxes, log)
    drawn = [p for p in out.glob("*.png") if p.stat().st_mtime >= started - 1]
    if not drawn and cfg.limit > 0:
        why = f" ({len(skipped)} item(s) skipped; first: {skipped[0]})" if skipped else ""
        fail(f"no figure was drawn into {out}{why}", code=1)
    console.print(f"[green]written[/green] {len(drawn)} figure(s) to {out}")


def _mil_heatmaps(cfg, out: Path, boxes: Path | None, log) -> None:
    import numpy as np
    import yaml

    from cytofm.viz.heatmaps import mil_heatmaps, warn_unmatched_boxes

    mil = Path(cfg.mil)
    if cfg.inputs:
        fail("give either images or --mil RUN, not both")
    cfg_path, att = mil / "config.yaml", mil / f"attention_{cfg.seed}.npz"
    if not cfg_path.is_file() or not att.is_file():
        fail(f"{mil}: not a `cytofm mil` run (needs config.yaml and attention_{cfg.seed}.npz)")
    features = Path(yaml.safe_load(cfg_path.read_text())["features"])
    with np.load(att) as z:
        attention = {k: z[k] for k in z.files}
    if boxes is not None:
        from cytofm.features.store import load_store

        warn_unmatched_boxes(boxes, [r["path"] for r in load_store(features) if r["id"] in attention],
                             cfg.box_class, log)
    scores = mil_heatmaps(features, attention, out, boxes, cfg.box_class, cfg.limit, log=log)
    _summary(scores, "ABMIL attention", out)


def _vit_heatmaps(cfg, out: Path, boxes: Path | None, log) -> None:
    from cytofm.models.zoo import create_encoder
    from cytofm.utils.distributed import pick_device
    from cytofm.viz.heatmaps import vit_heatmaps, warn_unmatched_boxes

    if not cfg.inputs:
        fail("give images (or folders), or --mil RUN")
    dev = pick_device(cfg.device)
    enc = create_encoder(cfg.encoder)
    if not enc.is_vit:
        fail(f"--encoder {cfg.encoder}: attention maps need a ViT encoder")
    enc.model.to(dev).eval()
    images = [str(p) for p in _images(cfg.inputs)]
    warn_unmatched_boxes(boxes, images, cfg.box_class, log)
    with make_progress() as progress:
        scores = vit_heatmaps(enc, images, out, boxes, cfg.box_class, cfg.limit,
                              None if cfg.tiles == "auto" else cfg.tiles == "on", dev, log=log,
                              progress=progress)
    _summary(scores, f"{cfg.encoder} [CLS] attention", out)


@user_errors
def umap(
    ctx: typer.Context,
    overrides: Annotated[list[str] | None, typer.Argument(help="Overrides as key=value, e.g. max_items=2000.",
                                                          show_default=False)] = None,
    features: Annotated[Path | None, typer.Option(help="Feature store folder (from `cytofm extract`).",
                                                  show_default=False)] = None,
    color_by: Annotated[str | None, typer.Option(help="Manifest column to colour by (label, "
                                                      "organ, preparation, stain, dataset...).",
                                                 show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(help="Output PNG (an interactive .html is written beside it).",
                                             show_default=False)] = None,
    method: Annotated[MapMethod, typer.Option(help="auto: UMAP when umap-learn "
                                                   "is installed, else t-SNE.")] = default(U, "method"),
    max_items: Annotated[int, typer.Option(help="Subsample to at most this many "
                                                "items (at random, fixed seed).")] = default(U, "max_items"),
    config: Annotated[Path | None, typer.Option(help=CONFIG_HELP)] = None,
    print_config: Annotated[bool, typer.Option("--print-config", help=PRINT_CONFIG_HELP)] = False,
) -> None:
    """2-D UMAP (or t-SNE/PCA) of a store's features (items mean-pooled) coloured by a manifest column."""
    cfg = resolve_settings(ctx, U, config, overrides, print_config,
                           {"features": "--features DIR", "color_by": "--color-by COLUMN",
                            "out": "--out FILE.png"})
    from cytofm.utils.io import check_writable_file
    from cytofm.viz.embedding import store_map

    check_writable_file(cfg.out)
    png, html, used, n = store_map(Path(cfg.features), cfg.color_by, Path(cfg.out), cfg.method,
                                   cfg.max_items, log=info)
    console.print(f"[green]written[/green] {png} and {html} ({used}, {n} items)")


@user_errors
def report(
    run: Annotated[Path, typer.Argument(help="A run, evaluation, benchmark or demo folder.")],
    out: Annotated[Path | None, typer.Option(help="Output HTML (default RUN/report.html).")] = None,
) -> None:
    """One self-contained HTML report of a folder: configs, metrics with CIs, pretraining curves,
    confusion matrices, heatmaps and UMAPs (images embedded; opens offline)."""
    from cytofm.utils.io import check_writable_file
    from cytofm.viz.report import build_report

    check_writable_file(out if out is not None else Path(run) / "report.html")
    try:
        path = build_report(run, out)
    except FileNotFoundError as e:
        fail(str(e))
    console.print(f"[green]written[/green] {path}")

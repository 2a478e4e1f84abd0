"""``cytofm heatmap``, ``cytofm umap`` and ``cytofm report``: visual evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cytofm.cli.common import console, fail, make_progress, user_errors


def _images(inputs: list[str]) -> list[Path]:
    from cytofm.data.image_io import IMAGE_EXTENSIONS

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
                      f"(uniform {s['chance_mass']:.3f}), pointing game {s['hit']:.3f} (chance {s['chance_hit']:.3f}); "
                      f"per item: {out}/localization.csv")


@user_errors
def heatmap(
    inputs: Annotated[list[str] | None, typer.Argument(help="Images or folders of images (ViT attention maps).", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder for the figures and localization.csv.")] = None,
    encoder: Annotated[str, typer.Option(help="Encoder spec for ViT attention maps (see `cytofm doctor`).")] = "cytofm",
    mil: Annotated[Path | None, typer.Option(help="A `cytofm mil` run folder: paint its ABMIL attention on the sources.")] = None,
    seed: Annotated[int, typer.Option(help="Which seed's out-of-fold attention of the MIL run to paint.")] = 0,
    boxes: Annotated[Path | None, typer.Option(help="Folder of Pascal VOC XML files named like the images: score attention against them.")] = None,
    box_class: Annotated[str, typer.Option(help="Object class of the boxes that count (BCCD: WBC).")] = "WBC",
    limit: Annotated[int, typer.Option(help="Draw figures for at most this many images (all annotated ones are scored).")] = 12,
    tiles: Annotated[str, typer.Option(help="auto: fields larger than twice the input size are tiled at native resolution; on; off (resize whole).")] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """ViT [CLS] attention maps of images, or ABMIL attention heatmaps of a MIL run, scored against boxes.

    Examples:

        cytofm heatmap cells/ --encoder cytofm --out maps

        cytofm heatmap fields/ --boxes annotations/ --out maps

        cytofm heatmap --mil runs/mil --boxes ../shared/data/bccd/annotations --out maps
    """
    import numpy as np
    import yaml

    from cytofm.viz.heatmaps import mil_heatmaps, vit_heatmaps

    if out is None:
        fail("give --out DIR")
    if boxes is not None and not boxes.is_dir():
        fail(f"--boxes {boxes}: not a folder of VOC XML files")
    if mil is not None:
        if inputs:
            fail("give either images or --mil RUN, not both")
        cfg_path, att = mil / "config.yaml", mil / f"attention_{seed}.npz"
        if not cfg_path.is_file() or not att.is_file():
            fail(f"{mil}: not a `cytofm mil` run (needs config.yaml and attention_{seed}.npz)")
        features = Path(yaml.safe_load(cfg_path.read_text())["features"])
        with np.load(att) as z:
            attention = {k: z[k] for k in z.files}
        scores = mil_heatmaps(features, attention, out, boxes, box_class, limit,
                              log=lambda m: console.print(m, markup=False))
        _summary(scores, "ABMIL attention", out)
    else:
        if not inputs:
            fail("give images (or folders), or --mil RUN")
        if tiles not in ("auto", "on", "off"):
            fail(f"--tiles must be auto, on or off, not '{tiles}'")
        from cytofm.models.zoo import create_encoder
        from cytofm.utils.distributed import pick_device

        dev = pick_device(device)
        enc = create_encoder(encoder)
        if not enc.is_vit:
            fail(f"--encoder {encoder}: attention maps need a ViT encoder")
        enc.model.to(dev).eval()
        with make_progress() as progress:
            scores = vit_heatmaps(enc, [str(p) for p in _images(inputs)], out, boxes, box_class, limit,
                                  None if tiles == "auto" else tiles == "on", dev,
                                  log=lambda m: progress.console.print(m, markup=False), progress=progress)
        _summary(scores, f"{encoder} [CLS] attention", out)
    console.print(f"[green]written[/green] figures to {out}")


@user_errors
def umap(
    features: Annotated[Path, typer.Option(help="Feature store folder (from `cytofm extract`).")],
    color_by: Annotated[str, typer.Option(help="Manifest column to colour by (label, organ, preparation, stain, dataset...).")],
    out: Annotated[Path, typer.Option(help="Output PNG (an interactive .html is written beside it).")],
    method: Annotated[str, typer.Option(help="auto (UMAP when umap-learn is installed, else t-SNE), umap, tsne or pca.")] = "auto",
    max_items: Annotated[int, typer.Option(help="Subsample to at most this many items (at random, fixed seed).")] = 5000,
) -> None:
    """2-D UMAP (or t-SNE/PCA) of a store's features (items mean-pooled) coloured by a manifest column."""
    from cytofm.viz.embedding import store_map

    png, html, used, n = store_map(features, color_by, out, method, max_items,
                                   log=lambda m: console.print(m, markup=False))
    console.print(f"[green]written[/green] {png} and {html} ({used}, {n} items)")


@user_errors
def report(
    run: Annotated[Path, typer.Argument(help="A run, evaluation, benchmark or demo folder.")],
    out: Annotated[Path | None, typer.Option(help="Output HTML (default RUN/report.html).")] = None,
) -> None:
    """One self-contained HTML report of a folder: configs, metrics with CIs, pretraining curves,
    confusion matrices, heatmaps and UMAPs (images embedded; opens offline)."""
    from cytofm.viz.report import build_report

    try:
        path = build_report(run, out)
    except FileNotFoundError as e:
        fail(str(e))
    console.print(f"[green]written[/green] {path}")

"""Commands whose interface is fixed now and whose implementation lands with later issues.

Declaring them with their final options keeps the command-line contract visible in ``--help``;
running one says plainly that it is not available yet instead of failing obscurely.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cytofm.cli.common import fail


def _not_yet(command: str, issue: int) -> None:
    fail(f"'cytofm {command}' is not available in this version yet (tracked in issue #{issue})", code=3)


def heatmap(
    args: Annotated[list[str] | None, typer.Argument(help="Images or a MIL run.", show_default=False)] = None,
) -> None:
    """ViT attention maps and MIL attention heatmaps."""
    _not_yet("heatmap", 6)


def umap(
    features: Annotated[Path, typer.Option(help="Feature store folder.")],
    color_by: Annotated[str, typer.Option(help="Manifest column to colour by.")],
    out: Annotated[Path, typer.Option(help="Output PNG.")],
) -> None:
    """2-D UMAP (or t-SNE/PCA) of features coloured by a column."""
    _not_yet("umap", 6)


def report(
    run: Annotated[Path, typer.Argument(help="A run or benchmark folder.")],
) -> None:
    """One self-contained HTML report of a run."""
    _not_yet("report", 6)

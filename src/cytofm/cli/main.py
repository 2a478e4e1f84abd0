"""Entry point: ``cytofm <command>``."""

from __future__ import annotations

import typer

from cytofm import __version__
from cytofm.cli import planned
from cytofm.cli.demo import demo
from cytofm.cli.doctor import doctor
from cytofm.cli.extract import extract
from cytofm.cli.prepare import prepare
from cytofm.cli.pretrain import export, pretrain

app = typer.Typer(
    name="cytofm",
    help="Build and use cytology foundation models: prepare data, pretrain (iBOT), extract frozen "
         "features, evaluate (probes, ABMIL, benchmark) and show the evidence (heatmaps, UMAP, report).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool):
    if value:
        typer.echo(f"cytofm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version.")):
    pass


app.command("prepare")(prepare)
app.command("pretrain")(pretrain)
app.command("export")(export)
app.command("extract")(extract)
app.command("probe")(planned.probe)
app.command("mil")(planned.mil)
app.command("benchmark")(planned.benchmark)
app.command("heatmap")(planned.heatmap)
app.command("umap")(planned.umap)
app.command("report")(planned.report)
app.command("demo")(demo)
app.command("doctor")(doctor)


def main() -> None:
    app()

"""Entry point: ``cytofm <command>``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from cytofm import __version__
from cytofm.cli.convert import convert
from cytofm.cli.demo import demo
from cytofm.cli.doctor import doctor
from cytofm.cli.evaluate import benchmark, mil, probe
from cytofm.cli.extract import extract
from cytofm.cli.prepare import prepare
from cytofm.cli.pretrain import export, pretrain
from cytofm.cli.visual import heatmap, report, umap

app = typer.Typer(
    name="cytofm",
    help="Build and use cytology foundation models: prepare data, pretrain (iBOT), extract frozen "
         "features, evaluate (probes, ABMIL, benchmark) and show the evidence (heatmaps, UMAP, report).",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool):
    if value:
        typer.echo(f"cytofm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Warnings and errors only; no progress."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More detail (debug messages)."),
    trust_weights: list[Path] | None = typer.Option(
        None, "--trust-weights", metavar="FILE",
        help="Allow this weights file to load with Python's full unpickler, which can run code: only for files "
             "from a source you trust (repeat for several). Without it, pickles that hold more than tensors are "
             "refused; .safetensors never need it."),
):
    from cytofm.cli.common import setup_logging, warn
    from cytofm.models.loading import trust

    setup_logging(-1 if quiet else min(verbose, 1))
    for p in trust_weights or []:
        trust(p)
        warn(f"{p} is trusted to run code while it loads (--trust-weights)")


app.command("prepare")(prepare)
app.command("pretrain")(pretrain)
app.command("export")(export)
app.command("extract")(extract)
app.command("convert")(convert)
app.command("probe")(probe)
app.command("mil")(mil)
app.command("benchmark")(benchmark)
app.command("heatmap")(heatmap)
app.command("umap")(umap)
app.command("report")(report)
app.command("demo")(demo)
app.command("doctor")(doctor)


# glibc returns every allocation above 32 MB to the OS and faults it in again each step; for training
# and extraction that costs up to 1.6-1.8x (shared/notes/cpu-performance.md). The setting must be in
# place before Python starts, so the heavy commands re-execute themselves once with it.
HEAP_TUNABLES = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=68719476736"
HEAVY = {"pretrain", "extract", "benchmark", "demo"}


def _command(argv: list[str]) -> str | None:
    """The sub-command in ``argv`` (after root options such as ``--trust-weights FILE``)."""
    i = 0
    while i < len(argv):
        if argv[i] == "--trust-weights":
            i += 2
        elif argv[i].startswith("-"):
            i += 1
        else:
            return argv[i]
    return None


def _tune_heap() -> None:
    if (sys.platform != "linux" or os.environ.get("GLIBC_TUNABLES") or os.environ.get("CYTOFM_NO_REEXEC")
            or _command(sys.argv[1:]) not in HEAVY):
        return
    env = dict(os.environ, GLIBC_TUNABLES=HEAP_TUNABLES, CYTOFM_NO_REEXEC="1")
    try:
        os.execve(sys.executable, [sys.executable, "-m", "cytofm", *sys.argv[1:]], env)
    except OSError:
        pass  # carry on without the tuning


def main() -> None:
    _tune_heap()
    app(prog_name="cytofm")

"""Entry point: ``cytofm <command>``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from typer.core import TyperGroup

from cytofm import __version__

COMMANDS = {
    "prepare": "cytofm.cli.prepare:prepare",
    "pretrain": "cytofm.cli.pretrain:pretrain",
    "export": "cytofm.cli.pretrain:export",
    "extract": "cytofm.cli.extract:extract",
    "convert": "cytofm.cli.convert:convert",
    "probe": "cytofm.cli.evaluate:probe",
    "mil": "cytofm.cli.evaluate:mil",
    "predict": "cytofm.cli.predict:predict",
    "triage": "cytofm.cli.triage:triage",
    "benchmark": "cytofm.cli.evaluate:benchmark",
    "heatmap": "cytofm.cli.visual:heatmap",
    "umap": "cytofm.cli.visual:umap",
    "report": "cytofm.cli.visual:report",
    "demo": "cytofm.cli.demo:demo",
    "doctor": "cytofm.cli.doctor:doctor",
}
"""Command -> where it is defined. A command's module is imported only when that command runs or shows
its help, so ``--help``, ``--version`` and a refused option never pay for torch, timm or scikit-learn."""


def _short_help(target: str) -> str:
    """The first line of a command's docstring, read from its source without importing it."""
    import ast
    import importlib.util

    mod, fn = target.split(":")
    spec = importlib.util.find_spec(mod)
    try:
        tree = ast.parse(Path(spec.origin).read_text())
        doc = next(ast.get_docstring(n) for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == fn)
    except (OSError, TypeError, StopIteration, SyntaxError, AttributeError):
        doc = None
    return (doc or "").strip().split("\n\n")[0].replace("\n", " ")


class LazyCommands(TyperGroup):
    """Sub-commands loaded on first use; the root's help lists them from their docstrings alone."""

    _listing = False

    def list_commands(self, ctx) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx, name: str):
        import click

        target = COMMANDS.get(name)
        if target is None:
            return None
        if self._listing:  # the root's help: a name and a line are all it shows
            return click.Command(name, help=_short_help(target))
        import importlib

        mod, fn = target.split(":")
        sub = typer.Typer(pretty_exceptions_enable=False, add_completion=False, context_settings=CONTEXT)
        sub.command(name)(getattr(importlib.import_module(mod), fn))
        return typer.main.get_command(sub)

    def format_help(self, ctx, formatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


CONTEXT = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    name="cytofm",
    cls=LazyCommands,
    help="Build and use cytology foundation models: prepare data, pretrain (iBOT), extract frozen "
         "features, evaluate (probes, ABMIL, benchmark) and show the evidence (heatmaps, UMAP, report).",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings=CONTEXT,
)


def _version(value: bool):
    if value:
        typer.echo(f"cytofm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Warnings and errors only; no progress."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More detail (debug messages)."),
    trust_weights: list[Path] | None = typer.Option(
        None, "--trust-weights", metavar="FILE",
        help="Allow this weights file to load with Python's full unpickler, which can run code: only for "
             "files from a source you trust (repeat for several). Without it, pickles that hold more than "
             "tensors are refused; .safetensors never need it."),
):
    from cytofm.cli.common import setup_logging, warn

    setup_logging(-1 if quiet else min(verbose, 1))
    if trust_weights:
        from cytofm.models.loading import trust

        for p in trust_weights:
            trust(p)
            warn(f"{p} is trusted to run code while it loads (--trust-weights)")


# glibc returns every allocation above 32 MB to the OS and faults it in again each step; for training
# and extraction that costs up to 1.6-1.8x (shared/notes/cpu-performance.md). The setting must be in
# place before Python starts, so the heavy commands re-execute themselves once with it.
HEAP_TUNABLES = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=68719476736"
HEAVY = {"pretrain", "extract", "benchmark", "demo", "predict", "triage"}


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
    from cytofm.utils.signals import default_stop_signals, terminate_as_interrupt

    terminate_as_interrupt()  # a scheduler's SIGTERM keeps finished work as Ctrl-C does
    try:
        app(prog_name="cytofm")
    finally:
        default_stop_signals()  # the work is done (or kept): a late signal just ends the process

"""Shared CLI machinery: console, ``key=value`` overrides, progress bars, clean error exits."""

from __future__ import annotations

import functools
import re
import shlex
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)

_OVERRIDE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*=")

OVERRIDES_HELP = "Config overrides as key=value (e.g. tiling.patch_size=128 foreground.min_fraction=0.2)."


def split_overrides(args: list[str] | None) -> tuple[list[str], list[str]]:
    """Separate ``key=value`` words from paths (a path that exists is always a path)."""
    paths, overrides = [], []
    for a in args or []:
        if _OVERRIDE.match(a) and not Path(a).exists():
            overrides.append(a)
        else:
            paths.append(a)
    return paths, overrides


def command_line() -> str:
    return "cytofm " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def make_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def fail(message: str, code: int = 2) -> None:
    console.print(f"[red]error:[/red] {message}", soft_wrap=True)
    raise typer.Exit(code)


def user_errors(fn):
    """Turn the errors a user can fix into one red line and exit status 2, never a traceback."""
    from cytofm.config.loader import ConfigError
    from cytofm.data.inputs import InputError
    from cytofm.models.zoo import EncoderError
    from cytofm.utils.distributed import DeviceError
    from cytofm.utils.lock import FolderLocked

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ConfigError, InputError, EncoderError, FolderLocked, DeviceError) as e:
            fail(str(e))
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/yellow]: finished items are kept; run the same command to resume")
            raise typer.Exit(130) from None

    return wrapper

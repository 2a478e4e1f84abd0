"""Shared CLI machinery: consoles, logging, progress (bars on a terminal, periodic plain lines in a log
file), ``--config``/``key=value`` resolution of command settings, clean error exits."""

from __future__ import annotations

import functools
import logging
import os
import re
import shlex
import sys
import threading
import time
from enum import Enum
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


def _console(stderr: bool) -> Console:
    """A rich console; written to a file or pipe it never wraps (tables and paths stay whole in a log)."""
    c = Console(stderr=stderr, highlight=False)
    if not c.is_terminal:
        c = Console(stderr=stderr, highlight=False, soft_wrap=True, width=max(c.width, 200))
    return c


console = _console(stderr=True)
out_console = _console(stderr=False)
logger = logging.getLogger("cytofm")

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


def setup_logging(verbosity: int = 0) -> None:
    """Messages of the ``cytofm`` logger: a rich handler on a terminal, timestamped plain lines otherwise.
    ``verbosity`` -1 (``-q``): warnings and errors only, no progress; 0: info; 1 (``-v``): debug."""
    global _verbosity
    _verbosity = verbosity
    for h in list(logger.handlers):
        logger.removeHandler(h)
    if console.is_terminal:
        from rich.logging import RichHandler

        h: logging.Handler = RichHandler(console=console, show_time=False, show_path=False, markup=False,
                                         rich_tracebacks=False, show_level=verbosity > 0)
        h.setFormatter(logging.Formatter("%(message)s"))
    else:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(h)
    logger.setLevel({-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG))
    logger.propagate = False


_verbosity = 0


def info(message: str) -> None:
    """The ``log`` callable the pipeline functions take: their messages that start with 'warning' are
    logged as warnings (kept under ``-q``), the rest as information."""
    if not logger.handlers:
        setup_logging(_verbosity)
    m = str(message)
    if m.lower().startswith("warning"):
        logger.warning(m.split(":", 1)[1].strip() if ":" in m[:9] else m)
    else:
        logger.info(m)


def warn(message: str) -> None:
    if not logger.handlers:
        setup_logging(_verbosity)
    logger.warning(message)


def _duration(s: float) -> str:
    s = int(max(s, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _seconds(value: str | None, fallback: float = 30.0) -> float:
    """``CYTOFM_PROGRESS_SECONDS`` as a number; anything else is the default (a log line is not worth a
    crash)."""
    try:
        return float(value) if value else fallback
    except ValueError:
        return fallback


class PlainProgress:
    """The part of ``rich.progress.Progress`` cytofm uses, as plain lines for log files and pipes: a line when
    a task starts, one every ``interval`` seconds while it runs (with rate and ETA, also while a long step
    holds it still: the heartbeat), and one when it finishes. Rich's bars would be cut to 80 columns and
    redrawn with carriage returns a log file cannot show."""

    def __init__(self, stream=None, interval: float | None = None):
        self.console = console
        self.stream = stream
        self.interval = max(0.1, _seconds(os.environ.get("CYTOFM_PROGRESS_SECONDS"))
                            if interval is None else interval)
        self.tasks: dict[int, dict] = {}
        self._next = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self):
        self._thread = threading.Thread(target=self._beat, daemon=True, name="cytofm-progress")
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with self._lock:
            for t in self.tasks.values():
                if not t["finished"] and t["completed"] > t["start"]:
                    self._emit(t, "stopped")
        return False

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields) -> int:
        with self._lock:
            k = self._next
            self._next += 1
            now = time.monotonic()
            nothing = total is not None and completed >= total  # e.g. every item already finished: no lines
            self.tasks[k] = {"description": description, "total": total, "completed": completed,
                             "start": completed, "t0": now, "last": now, "fields": dict(fields),
                             "finished": nothing, "warm": None}
            if not nothing:
                self._write(f"{description}: started"
                            + (f", {int(total - completed)} to do" if total else ""))
            return k

    def update(self, task_id: int, *, advance: float | None = None, completed: float | None = None,
               total: float | None = None, description: str | None = None, **fields) -> None:
        with self._lock:
            t = self.tasks[task_id]
            if total is not None:
                t["total"] = total
            if description is not None:
                t["description"] = description
            if completed is not None:
                t["completed"] = completed
            if advance is not None:
                t["completed"] += advance
            if t["warm"] is None and t["completed"] > t["start"]:
                t["warm"] = (time.monotonic(), t["completed"])  # the first unit done: start-up is behind
            t["fields"].update(fields)
            if t["total"] and t["completed"] >= t["total"] and not t["finished"]:
                t["finished"] = True
                self._emit(t, "done")
            elif time.monotonic() - t["last"] >= self.interval:
                self._emit(t)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def end_task(self, task_id: int, note: str) -> None:
        """A task that stops short of its total: its last line says so (``note``), no line follows."""
        with self._lock:
            t = self.tasks[task_id]
            if not t["finished"]:
                t["finished"] = True
                self._emit(t, note)

    def remove_task(self, task_id: int) -> None:
        with self._lock:
            self.tasks.pop(task_id, None)

    def line(self, t: dict, state: str = "") -> str:
        now = time.monotonic()
        el = now - t["t0"]
        done, total = t["completed"], t["total"]
        per_s = (done - t["start"]) / el if el > 0 else 0.0
        parts = [f"{t['description']}: {int(done)}/{int(total)} ({100 * done / total:.0f}%)" if total
                 else f"{t['description']}: {int(done)}"]
        rate = t["fields"].get("rate")
        parts.append(rate if rate else f"{per_s:.2f}/s")
        parts.append(f"elapsed {_duration(el)}")
        if state:
            parts.append(state)
        elif total:
            eta = self.eta(t, now)
            parts.append("eta estimating" if eta is None else f"eta {_duration(eta)}")
        return ", ".join(parts)

    @staticmethod
    def eta(t: dict, now: float) -> float | None:
        """Seconds left at the rate since the first unit finished: the first unit carries the start-up
        (model build, pool decoding, worker start) and would inflate the estimate several times over. None
        until two units have finished after it."""
        if t["warm"] is None or not t["total"]:
            return None
        tw, dw = t["warm"]
        if t["completed"] - dw < 2 or now <= tw:
            return None
        return (t["total"] - t["completed"]) * (now - tw) / (t["completed"] - dw)

    def _emit(self, t: dict, state: str = "") -> None:
        t["last"] = time.monotonic()
        self._write(self.line(t, state))

    def _write(self, text: str) -> None:
        if _verbosity < 0:
            return
        stream = self.stream or sys.stderr
        stream.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} progress {text}\n")
        stream.flush()

    def _beat(self) -> None:
        while not self._stop.wait(min(self.interval, 5.0)):
            with self._lock:
                for t in self.tasks.values():
                    if not t["finished"] and time.monotonic() - t["last"] >= self.interval:
                        self._emit(t)


def make_progress():
    """Bars on a terminal; periodic plain lines (``PlainProgress``) in a log file, pipe or under ``-q``."""
    if not console.is_terminal or _verbosity < 0:
        return PlainProgress()
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


def choices(name: str, values) -> type[Enum]:
    """A str enum for an option with a fixed set of values, so ``--help`` lists them and typos are refused."""
    return Enum(name, [(v, v) for v in values], type=str)


def encoder_specs() -> str:
    """Every encoder family's spec syntax, read from the registry, so an ``--encoder`` help lists them all."""
    from cytofm.models.registry import ENCODER_FAMILIES

    return ", ".join(e.syntax for e in ENCODER_FAMILIES.entries())


def plain(v):
    """A CLI value as the configs take it: enums by value, paths as strings."""
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v


CONFIG_HELP = ("YAML file of this command's settings (keys as the options, with _ for -); "
               "options and key=value win over it.")
PRINT_CONFIG_HELP = "Print the resolved settings as YAML (a valid --config file) and exit without running."


def resolve_settings(ctx: typer.Context, schema, config: Path | None, overrides: list[str] | None,
                     print_config: bool = False, required: dict[str, str] | None = None):
    """A command's typed settings: schema defaults < ``--config FILE`` < options given on the command line
    < ``key=value`` overrides (unknown keys refused with the closest valid one). ``required`` maps a key
    to the option that sets it; a key still unset is refused naming both. With ``print_config`` the
    resolved YAML goes to stdout and the command exits."""
    from cytofm.config.loader import ConfigError, build_config, config_dict

    if config is not None and not Path(config).is_file():
        raise ConfigError(f"--config {config}: no such file")
    given = {}
    for name, v in ctx.params.items():
        # by name: typer may vendor its own click
        src = getattr(ctx.get_parameter_source(name), "name", "DEFAULT")
        if name in schema.model_fields and src not in ("DEFAULT", "DEFAULT_MAP"):
            given[name] = plain(v)
    names = {k: "--" + k.replace("_", "-") for k in given}  # a refusal names the option the user typed
    cfg = build_config(schema, file=config, values=given, overrides=overrides or [], names=names)
    if print_config:
        import yaml

        out_console.print(yaml.safe_dump(config_dict(cfg), sort_keys=False).rstrip(), markup=False)
        raise typer.Exit()
    for key, option in (required or {}).items():
        if getattr(cfg, key) in (None, "", []):
            raise ConfigError(f"give {option} (or `{key}:` in --config, or {key}=... on the command line)")
    return cfg


def default(schema, key: str):
    """An option's default, read from the settings schema (one source for ``--help`` and the config)."""
    return schema.model_fields[key].default


def fail(message: str, code: int = 2) -> None:
    from rich.markup import escape

    console.print("[red]error:[/red] " + escape(str(message)), soft_wrap=True)
    raise typer.Exit(code)


def user_errors(fn):
    """Turn the errors a user can fix (``UserError``) into one red line and exit status 2, never a
    traceback."""
    from cytofm.utils.errors import UserError

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            fail(str(e))
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM/SIGUSR1 from a scheduler (utils.signals)
            from cytofm.utils.signals import exit_code

            name = getattr(e, "signal_name", "SIGINT")
            what = "interrupted" if name == "SIGINT" else f"stopped by {name}"
            console.print(f"[yellow]{what}[/yellow]: finished items are kept; run the same command to resume")
            raise typer.Exit(exit_code(name)) from None

    return wrapper

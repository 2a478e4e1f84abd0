"""Names in published tables: what a reader can reproduce, never a path of the machine that ran it."""

from __future__ import annotations

import re
from pathlib import Path


def display_name(spec: str) -> str:
    """An encoder spec a reader can reproduce: a local path is cut to its last component."""
    return ":".join(Path(p).name if ("/" in p or "\\" in p) else p for p in spec.split(":"))


def display_text(text: str) -> str:
    """A message for a published table: every absolute path in it cut to its last component."""
    return re.sub(r"(?<![\w.])~?/[^\s,;'\"()/]+(?:/[^\s,;'\"()]+)+", lambda m: Path(m.group()).name, text)


def display_path(p: str) -> str:
    """A data path for a published table: relative paths as written, absolute ones cut to folder/file."""
    return p if not Path(p).is_absolute() else "/".join(Path(p).parts[-2:])

"""The shared data folder every benchmark reads: one ``--data`` option (default ``../shared/data`` beside the
repository) and one message where it is absent, so a benchmark run without the data says so and exits 0."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def add_data_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--data", default=str(DEFAULT), help="the shared data folder")


def data_folder(value: str, needs: str = "bccd", doing: str = "score") -> Path | None:
    """The folder, or None after saying that ``needs`` is not in it."""
    data = Path(value)
    if not (data / needs).is_dir():
        print(f"shared data not found under {data}: nothing to {doing} (give --data)")
        return None
    return data

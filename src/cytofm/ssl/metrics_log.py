"""What a pretraining run records as it goes: ``metrics.csv`` (trimmed on resume to the iteration the run
continues from, so each iteration is logged once however often the run was killed between a log line and a
checkpoint), TensorBoard when installed, and the one-time collapse warning."""

from __future__ import annotations

import csv
import os
from pathlib import Path


def trim_metrics(path: Path, start_iter: int) -> list[str] | None:
    """Keep the rows up to ``start_iter``; returns the existing header (None: no file or an empty one)."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames
        rows = [r for r in reader if r.get("iteration", "").isdigit() and int(r["iteration"]) <= start_iter]
    if not fields:
        return None
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
    return list(fields)


def tensorboard_writer(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed: CSV only
        return None
    return SummaryWriter(str(out / "tensorboard"))


class MetricsLog:
    """``metrics.csv`` and TensorBoard of one run (only the process that writes, rank 0, opens them)."""

    def __init__(self, out: Path, start_iter: int, active: bool = True):
        self.active = active
        self.path = out / "metrics.csv"
        self.fields = trim_metrics(self.path, start_iter) if active else None
        self._file = open(self.path, "a", newline="") if active else None
        self._writer = None
        self.tensorboard = tensorboard_writer(out) if active else None
        self.warned_collapse = False

    def row(self, m: dict) -> None:
        """One CSV row; the header is the file's own when resuming (new columns are left out)."""
        if self._file is None:
            return
        if self._writer is None:
            self._writer = csv.DictWriter(self._file, fieldnames=self.fields or list(m), restval="",
                                          extrasaction="ignore")
            if not self.fields:
                self._writer.writeheader()
        self._writer.writerow(m)
        self._file.flush()

    def scalars(self, m: dict, step: int) -> None:
        if self.tensorboard is not None:
            for k, v in m.items():
                if isinstance(v, float | int) and k != "iteration":
                    self.tensorboard.add_scalar(k, v, step)

    def collapse(self, m: dict, done: int, after: int, log=print) -> None:
        """Warn once when the teacher's [CLS] outputs look collapsed (entropy near 0 or log K, no spread)."""
        if self.warned_collapse or done <= after:
            return
        if m["entropy_ratio"] > 0.98 or m["entropy_ratio"] < 0.02 or m["teacher_spread"] < 1e-4:
            log(f"warning: possible collapse at iteration {done}: teacher [CLS] entropy "
                f"{m['entropy_ratio']:.2f} x log K, spread {m['teacher_spread']:.2e}")
            self.warned_collapse = True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()

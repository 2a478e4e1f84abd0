"""A stage's progress task that ends when the stage ends.

A stage that stops before its total (a time budget, ``stop_at``, a non-finite loss, an error) must close
its progress line with "stopped at N of M" there and then: otherwise a progress display that outlives the
stage (the demo runs six stages in one) keeps printing the stage, with an ETA, long after it stopped.
"""

from __future__ import annotations


class StageTask:
    """One task of a ``rich.progress.Progress``-like display (or of none: every call is then a no-op).

    ``with StageTask(progress, "extract", n) as task: ... task.update(advance=1)``: leaving the block short
    of the total (break, return, an exception) ends the task with "stopped at N of M"."""

    def __init__(self, progress, description: str, total: float | None, completed: float = 0, **fields):
        self.progress, self.description, self.total = progress, description, total
        self.completed = completed
        self.ended = False
        self.id = (progress.add_task(description, total=total, completed=completed, **fields)
                   if progress else None)

    def update(self, *, completed: float | None = None, advance: float | None = None, **fields) -> None:
        if completed is not None:
            self.completed = completed
        if advance is not None:
            self.completed += advance
        if self.progress is not None and not self.ended:
            self.progress.update(self.id, completed=self.completed, **fields)

    @property
    def finished(self) -> bool:
        return self.total is not None and self.completed >= self.total

    def stop(self, reason: str = "") -> None:
        """End the task short of its total: one closing line, nothing after it."""
        if self.ended or self.progress is None:
            self.ended = True
            return
        self.ended = True
        if self.finished:
            return
        note = (f"stopped at {int(self.completed)} of {int(self.total)}" if self.total
                else f"stopped at {int(self.completed)}")
        if reason:
            note += f" ({reason})"
        end = getattr(self.progress, "end_task", None)
        if end is not None:  # PlainProgress: writes the closing line and marks the task finished
            end(self.id, note)
        else:  # rich: the bar stays, its description says where it stopped, its clock stops
            self.progress.update(self.id, description=f"{self.description}: {note}")
            self.progress.stop_task(self.id)

    def __enter__(self) -> StageTask:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.stop(_reason(exc) if exc is not None else "")
        return False


def _reason(e: BaseException) -> str:
    if isinstance(e, KeyboardInterrupt):
        return getattr(e, "signal_name", None) or "interrupted"
    return getattr(e, "progress_reason", None) or f"error: {type(e).__name__}"

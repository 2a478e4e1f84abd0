"""A stage's progress task ends when the stage ends: "stopped at N of M" as its last line, nothing after;
ETAs from the rate after the first unit (hand values)."""

import io
import time

import pytest
from rich.console import Console
from rich.progress import Progress

from cytofm.cli import common
from cytofm.cli.common import PlainProgress
from cytofm.utils.progress import StageTask


def _lines_of(buf, name):
    return [ln.split(" progress ", 1)[1] for ln in buf.getvalue().splitlines() if f" progress {name}:" in ln]


def test_break_closes_the_task_and_nothing_follows(monkeypatch):
    monkeypatch.setattr(common, "_verbosity", 0)
    buf = io.StringIO()
    with PlainProgress(stream=buf, interval=0.1) as p:
        with StageTask(p, "stage", 10, rate="") as task:
            for i in range(10):
                task.update(advance=1)
                if i == 2:
                    task.stop("budget")
                    break
        time.sleep(0.5)  # a later stage runs on in the same display: the heartbeat must not report this one
    lines = _lines_of(buf, "stage")
    assert lines[-1].startswith("stage: 3/10 (30%)") and lines[-1].endswith("stopped at 3 of 10 (budget)")
    assert sum("stopped" in ln for ln in lines) == 1 and not any("eta" in ln for ln in lines[1:])


def test_an_error_closes_the_task_with_its_kind(monkeypatch):
    monkeypatch.setattr(common, "_verbosity", 0)
    buf = io.StringIO()
    with PlainProgress(stream=buf, interval=0.1) as p:
        with pytest.raises(ValueError), StageTask(p, "stage", 4, rate="") as task:
            task.update(advance=1)
            raise ValueError("bad")
        time.sleep(0.3)
    assert _lines_of(buf, "stage")[-1].endswith("stopped at 1 of 4 (error: ValueError)")


def test_a_finished_task_says_done_not_stopped(monkeypatch):
    monkeypatch.setattr(common, "_verbosity", 0)
    buf = io.StringIO()
    with PlainProgress(stream=buf, interval=10) as p, StageTask(p, "stage", 2, rate="") as task:
        task.update(advance=2)
    lines = _lines_of(buf, "stage")
    assert lines[-1].endswith("done") and not any("stopped" in ln for ln in lines)


def test_rich_bar_says_where_it_stopped_and_its_clock_stops():
    p = Progress(console=Console(file=io.StringIO(), force_terminal=True))
    with p:
        with StageTask(p, "pretrain", 120) as task:
            task.update(completed=13)
            task.stop("train.max_minutes=3")
        t = p.tasks[0]
        assert t.description == "pretrain: stopped at 13 of 120 (train.max_minutes=3)"
        assert t.stop_time is not None and not t.finished


def test_no_display_is_a_no_op():
    with StageTask(None, "x", 3) as task:
        task.update(advance=1)
    assert task.completed == 1 and task.ended


def test_eta_from_the_rate_after_the_first_unit():
    # the first unit finished at t=10 s (start-up before it); 4 more by t=18 s: 0.5 units/s, 16 left -> 32 s
    t = {"warm": (10.0, 1), "completed": 5, "total": 21}
    assert PlainProgress.eta(t, 18.0) == pytest.approx(32.0)
    # one unit past the warm-up: no estimate yet
    assert PlainProgress.eta({**t, "completed": 2}, 18.0) is None
    assert PlainProgress.eta({**t, "warm": None}, 18.0) is None


def test_first_eta_not_inflated_by_a_slow_first_unit(monkeypatch):
    monkeypatch.setattr(common, "_verbosity", 0)
    buf = io.StringIO()
    now = [0.0]
    fake = type("Clock", (),
                {"monotonic": staticmethod(lambda: now[0]), "strftime": staticmethod(time.strftime)})
    monkeypatch.setattr(common, "time", fake)
    p = PlainProgress(stream=buf, interval=0.5)  # no heartbeat thread: lines come from updates only
    k = p.add_task("x", total=100)
    for t in (50.0, 51.0, 52.0, 53.0):  # unit 1 took 50 s (start-up), units 2-4 took 1 s each
        now[0] = t
        p.update(k, advance=1)
    # 96 left at 1 unit/s: 96 s (1:36); the rate from the start (4 in 53 s) would say 21 minutes
    assert buf.getvalue().splitlines()[-1].endswith("eta 1:36")

"""Stop signals: deferred to a flag inside a loop that can save, raised as an interrupt elsewhere."""

import os
import signal

import pytest

from cytofm.utils.signals import Terminated, deferred_stop, exit_code, terminate_as_interrupt


def test_deferred_stop_raises_a_flag_and_restores_the_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with deferred_stop() as stop:
        assert not stop
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)  # the process is still here; the first signal is the one kept
        assert stop.name == "SIGUSR1"
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_second_ctrl_c_stops_at_once():
    with pytest.raises(KeyboardInterrupt), deferred_stop() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.name == "SIGINT"
        os.kill(os.getpid(), signal.SIGINT)


def test_sigterm_as_an_interrupt_and_exit_codes():
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        terminate_as_interrupt()
        with pytest.raises(Terminated) as e:
            os.kill(os.getpid(), signal.SIGTERM)
        assert isinstance(e.value, KeyboardInterrupt) and e.value.signal_name == "SIGTERM"
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    assert (exit_code("SIGTERM"), exit_code("SIGINT"), exit_code("SIGUSR1")) == (143, 130, 138)


def test_after_the_work_a_late_signal_only_ends_the_process():
    from cytofm.utils.signals import default_stop_signals

    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        terminate_as_interrupt()
        default_stop_signals()
        assert (signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
                and signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL)
    finally:
        for s, h in old.items():
            signal.signal(s, h)

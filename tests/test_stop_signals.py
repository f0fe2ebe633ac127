"""Ctrl-C and SIGTERM during a run: the first stops it, every later one is held until the run has
saved (wherever it lands: also between the loop's end and the save, where a second Ctrl-C used to
break the save about once in ten tries), and a Ctrl-C the process ignores stays ignored."""

from __future__ import annotations

import os
import signal

import pytest
from helpers import resolved, tiny_spec_dict

import clipforge
from clipforge import outputs, signals


@pytest.fixture(autouse=True)
def live_ctrl_c():
    """Ctrl-C as a terminal gives it, whatever this process inherited: a job started in the background
    (``cmd &`` in a script) inherits SIGINT ignored, and clipforge rightly keeps an ignored Ctrl-C ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_the_first_signal_stops_and_later_ones_are_held_wherever_they_come():
    with signals.StopSignals() as stop:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        # the moment between the loop and the save: a second Ctrl-C and a SIGTERM change nothing
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.arrived == [signal.SIGINT, signal.SIGINT, signal.SIGTERM]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handed back


def test_sigterm_stops_as_terminated_and_held_ones_are_listed():
    with signals.StopSignals() as stop:
        with stop.held() as arrived:
            os.kill(os.getpid(), signal.SIGTERM)  # during a checkpoint: held, listed
        assert arrived == [signal.SIGTERM]
        with pytest.raises(signals.Terminated):
            stop.stop_now(arrived[0])
        os.kill(os.getpid(), signal.SIGINT)  # held now


def test_an_ignored_ctrl_c_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with signals.StopSignals():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)  # nothing happens
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


class CtrlCTwice(clipforge.Callback):
    """Ctrl-C at step 2, and again while the run stops."""

    name = "ctrl_c_twice"

    def on_step_end(self, run, state):
        if state.step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    def on_run_end(self, run, result):
        os.kill(os.getpid(), signal.SIGINT)


def test_a_run_stopped_by_ctrl_c_saves_through_a_second_one(tmp_path):
    result = clipforge.Engine(
        resolved(tiny_spec_dict(steps=50)), out_dir=tmp_path / "out", callbacks=[CtrlCTwice(clipforge.Options())]
    ).run()
    assert result.interrupted and result.steps_done == 2
    assert not (tmp_path / "out" / outputs.LOCK).exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

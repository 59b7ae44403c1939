"""The progress report: plain rate-limited lines off a terminal, a live bar on one, ETA without the first step."""

import io

import pytest

from scasml._progress import ProgressBar


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def run(bar, clock, times):
    """Finish step k (1-based) at ``times[k - 1]``."""
    for k, t in enumerate(times, start=1):
        clock.now = t
        bar.update(k)
    bar.close()


def test_plain_lines_off_a_terminal_are_rate_limited_and_have_no_carriage_returns():
    clock, out = Clock(), io.StringIO()  # StringIO.isatty() is False, like a log file or a pipe
    bar = ProgressBar("eval", 10, stream=out, interval=5.0, clock=clock)
    assert not bar.live
    run(bar, clock, [7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0])
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    # first step (at 7 s), then one line per 5 s (steps 6 at 12 s), and the last step
    assert [line.split()[1] for line in lines] == ["1/10", "6/10", "10/10"]
    assert all(line.startswith("[eval] ") for line in lines)
    assert "eta ?" in lines[0] and "eta 4.0 s" in lines[-2]  # 1 s per step after the first: 4 steps left


def test_plain_close_reports_a_last_step_that_fell_inside_the_rate_limit():
    clock, out = Clock(), io.StringIO()
    bar = ProgressBar("eval", 10, stream=out, interval=100.0, clock=clock)
    run(bar, clock, [1.0, 2.0, 3.0])  # stopped early (e.g. an error), after 3 of 10
    assert [line.split()[1] for line in out.getvalue().splitlines()] == ["1/10", "3/10"]


def test_eta_excludes_the_first_compiling_step():
    clock = Clock()
    bar = ProgressBar("eval", 10, stream=io.StringIO(), clock=clock)
    clock.now = 30.0  # the first step: 30 s, mostly compilation
    bar.update(1)
    assert bar.eta(clock.now) is None
    clock.now = 32.0  # then 2 s per step
    bar.update(2)
    assert bar.eta(clock.now) == pytest.approx(2.0 * 8)
    clock.now = 36.0
    bar.update(4)
    assert bar.eta(clock.now) == pytest.approx(2.0 * 6)
    assert "eta 12.0 s" in bar.text(clock.now)


def test_skipped_steps_count_as_done_but_not_towards_the_eta():
    clock, out = Clock(), io.StringIO()
    bar = ProgressBar("eval", 10, stream=out, skipped=6, clock=clock)
    clock.now = 20.0
    bar.update(7)
    clock.now = 21.0
    bar.update(8)
    assert bar.eta(clock.now) == pytest.approx(1.0 * 2)
    assert out.getvalue().splitlines()[0].split()[1] == "7/10"


def test_live_bar_on_a_terminal_redraws_one_line():
    clock, out = Clock(), Terminal()
    bar = ProgressBar("eval", 4, stream=out, clock=clock)
    assert bar.live
    run(bar, clock, [5.0, 6.0, 7.0, 8.0])
    text = out.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1  # one line, redrawn in place
    frames = text.rstrip("\n").split("\r")[1:]
    assert len(frames) == 5  # the empty bar, then each step (1 s apart > refresh)
    assert "4/4" in frames[-1] and "#" * 30 in frames[-1]
    assert "eta        ?" in frames[1] and "eta    0.0 s" in frames[-1]


def test_live_bar_is_rate_limited_but_always_draws_the_last_step():
    clock, out = Clock(), Terminal()
    bar = ProgressBar("eval", 100, stream=out, refresh=1.0, clock=clock)
    run(bar, clock, [0.01 * k for k in range(1, 101)])  # 100 steps in one second
    frames = out.getvalue().rstrip("\n").split("\r")[1:]
    assert len(frames) <= 4 and "100/100" in frames[-1]


def test_disabled_bar_writes_nothing():
    out = Terminal()
    bar = ProgressBar("eval", 3, enabled=False, stream=out)
    bar.update(1)
    bar.close()
    assert out.getvalue() == ""


def test_training_progress_in_a_log_is_plain_lines(capsys):
    """scasml.train reports through the same ProgressBar: no carriage returns when stderr is not a terminal."""
    import jax

    import scasml

    pde = scasml.equations.get("vb", dim=3)
    pinn = scasml.PINN(3, pde.horizon, jax.random.key(0), width=8, depth=1)
    scasml.train(pinn, pde, jax.random.key(1), steps=20, collocation=8, terminal_points=8, log_every=5)
    err = capsys.readouterr().err
    assert "\r" not in err and err.splitlines()[-1].startswith("[train] 20/20 (100 %)") and "loss" in err

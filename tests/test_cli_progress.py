"""The commands' progress line: a real rate from the first frame on, each update once, no extra line."""
import io

from talkingpose.cli.progress import Progress


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_each_update_is_one_line_with_the_rate_of_this_run_and_nothing_after_the_last():
    out, clock = io.StringIO(), _Clock()
    progress = Progress("animate", file=out, clock=clock)
    progress(0, 3)  # before the first frame: no rate yet, rather than one computed from no time at all
    for done in (1, 2, 3):
        clock.now += 10
        progress(done, 3)
    progress.close()
    assert out.getvalue().splitlines() == [
        "animate 0/3 frames",
        "animate 1/3 frames · 10.00 s/frame · ETA 0:20",
        "animate 2/3 frames · 10.00 s/frame · ETA 0:10",
        "animate 3/3 frames · 10.00 s/frame · ETA 0:00",
    ]


def test_a_resumed_run_counts_only_its_own_frames():
    out, clock = io.StringIO(), _Clock()
    progress = Progress("animate", file=out, clock=clock)
    progress(50, 100)  # 50 frames were kept by the interrupted run
    clock.now += 6
    progress(51, 100)
    assert out.getvalue().splitlines()[-1] == "animate 51/100 frames · 6.00 s/frame · ETA 4:54"


def test_on_a_terminal_the_line_is_rewritten_and_ended_once():
    out, clock = _Terminal(), _Clock()
    progress = Progress("metrics", file=out, clock=clock)
    for done in range(0, 4):
        clock.now += 1
        progress(done, 3)
    progress.close()
    progress.close()
    text = out.getvalue()
    assert text.count("\r") == 4 and text.endswith("metrics 3/3 frames · 1.00 s/frame · ETA 0:00\x1b[K\n")
    assert text.count("\n") == 1


def test_a_log_gets_at_most_one_line_per_percent():
    out, clock = io.StringIO(), _Clock()
    progress = Progress("metrics", file=out, clock=clock)
    for done in range(0, 5001):
        clock.now += 0.01
        progress(done, 5000)
    lines = out.getvalue().splitlines()
    assert len(lines) == 101 and lines[-1].startswith("metrics 5000/5000 frames")

"""A one-line progress report for the commands: `label done/total unit · s/unit · ETA`.

On a terminal the line is rewritten in place and ended once at the close; elsewhere (a log, a pipe) an update
is one line, printed when the percentage changes (at most about a hundred lines, however long the job). The rate counts only the work of this run, from the first report on (a resumed render
starts at the kept frames), so it is never computed from a near-zero time.
"""
from __future__ import annotations

import sys
import time


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Progress:
    def __init__(self, label: str, unit: str = "frame", file=None, clock=time.monotonic):
        self.label, self.unit = label, unit
        self._file = file if file is not None else sys.stderr
        self._clock = clock
        self._tty = bool(getattr(self._file, "isatty", lambda: False)())
        self._start = None  # (time, done) of the first report
        self._line_open = False
        self._last = None
        self._percent = None

    def __call__(self, done: int, total: int) -> None:
        now = self._clock()
        if self._start is None:
            self._start = (now, done)
        elif not self._tty and done < total and done * 100 // total == self._percent:
            return
        self._percent = done * 100 // max(total, 1)
        text = f"{self.label} {done}/{total} {self.unit}s"
        made = done - self._start[1]
        if made > 0:
            per_unit = (now - self._start[0]) / made
            text += f" · {per_unit:.2f} s/{self.unit} · ETA {_clock(per_unit * (total - done))}"
        if text == self._last:
            return
        self._last = text
        if self._tty:
            self._file.write("\r" + text + "\x1b[K")
            self._line_open = True
        else:
            self._file.write(text + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._line_open:
            self._file.write("\n")
            self._file.flush()
            self._line_open = False

"""Work done beside the denoising, in the serial order: the next frame's pose made ahead of it, the last frame's
decode, conversion, write and state made after it, each in a thread of its own.

The denoising spends its time in PyTorch kernels, which release the GIL, so pose extraction (onnxruntime, PyAV,
OpenCV: also GIL-free in their heavy parts) and the decode and encode of the frame before run at the same time.
Nothing here reorders anything: poses are made one after another by one thread, frames are committed one after
another by another, so the frames, the files and the states are those of the serial loop, bit for bit.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable

_END = object()


class Ahead:
    """Calls `make()` in a thread, up to `depth` results ahead of `next()`, until it returns None. An exception
    `make` raises comes out of `next()` at the place its result would have (the results before it first)."""

    def __init__(self, make: Callable, depth: int = 1, name: str = "talkingpose-ahead"):
        self._make = make
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._make()
            except BaseException as exc:  # handed to the consumer, raised there
                self._queue.put((False, exc))
                return
            self._queue.put((True, item))
            if item is None:
                return

    def next(self):
        made, value = self._queue.get()
        if not made:
            raise value
        return value

    def close(self) -> None:
        """Stops making more; waits for the item being made (the source is free for others when this returns)."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)  # unblocks a put waiting for room
            except queue.Empty:
                pass
        self._thread.join()


class InOrder:
    """Runs `work(*item)` in a thread for each submitted item, in submission order, with at most `depth` items
    waiting (so memory stays bounded). After `work` raises, the items still waiting are dropped (what the serial
    loop would never have reached) and the exception comes out of the next `submit` or of `close`."""

    def __init__(self, work: Callable, depth: int = 1, name: str = "talkingpose-commit"):
        self._work = work
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._failed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not _END:
            if self._failed:
                continue
            try:
                self._work(*item)
            except BaseException as exc:  # handed to the submitting thread
                self._error, self._failed = exc, True

    def submit(self, *item) -> None:
        self._raise_error()
        self._queue.put(item)

    def close(self, raise_error: bool = True) -> None:
        """Waits until every submitted item is done (items already made are kept: after Ctrl-C too); then raises
        what `work` raised, when `raise_error`."""
        self._queue.put(_END)
        self._thread.join()
        if raise_error:
            self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

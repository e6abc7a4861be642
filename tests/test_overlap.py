"""The threads that run beside the denoising (talkingpose/overlap.py, animate.render_frames): they really run at
the same time as the denoising, keep the serial order, and stop as the serial loop would on an error."""
import threading
from types import SimpleNamespace

import pytest

from talkingpose.animate import render_frames
from talkingpose.overlap import Ahead, InOrder

WAIT = 20  # seconds; only reached when the threads do not overlap


class _Render:
    """A render of `frames` frames whose denoising of frame k (k >= 1) waits until the pose of frame k+1 has been
    made and frame k-1 has been kept: only an overlapped loop gets through it."""

    def __init__(self, frames, overlapping=True):
        self.total, self.overlapping = frames, overlapping
        self.posed, self.kept, self.log = 0, [], []
        self.pose_made = {k: threading.Event() for k in range(frames + 1)}
        self.frame_kept = {k: threading.Event() for k in range(frames)}
        self.sampler = SimpleNamespace(state=SimpleNamespace(next_frame=0), denoise=self._denoise)

    def next_pose(self):
        k = self.posed
        self.posed += 1
        self.pose_made[k].set()
        return None if k >= self.total else k

    def _denoise(self, pose):
        if self.overlapping and pose >= 1:
            assert self.pose_made[pose + 1].wait(WAIT), "the next pose was not made during the denoising"
            assert self.frame_kept[pose - 1].wait(WAIT), "the last frame was not kept during the denoising"
        self.sampler.state = SimpleNamespace(next_frame=pose + 1)
        return pose * 10

    def commit(self, latent, state):
        self.kept.append((latent, state.next_frame))
        self.frame_kept[state.next_frame - 1].set()


def test_pose_ahead_and_frames_kept_during_the_denoising():
    render, reports = _Render(5), []
    render_frames(render, lambda done, total: reports.append((done, total)))
    assert render.kept == [(k * 10, k + 1) for k in range(5)]
    assert reports == [(k + 1, 5) for k in range(5)]


def test_serial_loop_is_the_same_without_overlap():
    render = _Render(4, overlapping=False)
    render_frames(render)
    assert render.kept == [(k * 10, k + 1) for k in range(4)]


def test_an_error_in_keeping_a_frame_stops_the_frames_after_it():
    render = _Render(6, overlapping=False)

    def stop_at_3(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        render_frames(render, stop_at_3)
    assert [state for _, state in render.kept] == [1, 2, 3]  # frame 3 may be denoised, never kept


def test_ctrl_c_in_the_denoising_keeps_the_frames_already_denoised():
    render = _Render(6, overlapping=False)
    real = render._denoise

    def interrupted(pose):
        if pose == 4:
            raise KeyboardInterrupt
        return real(pose)

    render.sampler.denoise = interrupted
    with pytest.raises(KeyboardInterrupt):
        render_frames(render)
    assert [state for _, state in render.kept] == [1, 2, 3, 4]


def test_ahead_raises_a_failure_in_its_place():
    items = iter([1, 2, ValueError("bad frame 3")])

    def make():
        item = next(items)
        if isinstance(item, Exception):
            raise item
        return item

    ahead = Ahead(make)
    assert ahead.next() == 1 and ahead.next() == 2
    with pytest.raises(ValueError, match="bad frame 3"):
        ahead.next()
    ahead.close()


def test_in_order_keeps_the_order_and_bounds_the_queue():
    done, gate = [], threading.Event()

    def work(i):
        gate.wait(WAIT)
        done.append(i)

    worker = InOrder(work, depth=1)
    worker.submit(0)  # taken by the thread, waiting on the gate
    worker.submit(1)  # waits in the queue
    blocked = threading.Thread(target=worker.submit, args=(2,))
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive()  # no room: the caller waits instead of piling up frames
    gate.set()
    blocked.join(WAIT)
    worker.close()
    assert done == [0, 1, 2]

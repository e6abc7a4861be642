"""The threads that run beside the denoising (talkingpose/overlap.py, animate.render_frames): they really run at
the same time as the denoising, keep the serial order, and stop as the serial loop would on an error."""
import threading
from types import SimpleNamespace

import pytest
import torch

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


# ----------------------------------------------------------------------------------- the batch worker (K videos)
class _WorkerRender:
    """Stands in for `animate.JobRender` in the batch worker: the denoising of frame k (k >= 1) waits until the
    pose of frame k+1 has been made and frame k-1 has been kept, so only an overlapping worker gets through."""

    def __init__(self, job, pipe):
        self.job, self.start, self.total = job, 0, job.frames
        self.appearance = self  # what the stand-in batched sampler is given: the renders themselves
        self.posed, self.kept, self.finished = 0, [], False
        self.pose_made = {k: threading.Event() for k in range(self.total + 1)}
        self.frame_kept = {k: threading.Event() for k in range(self.total)}
        self.sampler = _WorkerSampler(self, SimpleNamespace(next_frame=0))
        pipe.renders[job.out.name] = self

    @property
    def done(self):
        return self.sampler.state.next_frame

    def next_pose(self):
        k = self.posed
        self.posed += 1
        self.pose_made[k].set()
        return None if k >= self.total else torch.tensor([[float(k)]])

    def denoised(self, k):
        if self.job.out.name == "fails.mp4" and k == 2:
            raise RuntimeError("out of memory at frame 2")
        if k >= 1:
            assert self.pose_made[k + 1].wait(WAIT), "the next pose was not made during the denoising"
            assert self.frame_kept[k - 1].wait(WAIT), "the last frame was not kept during the denoising"
        return k * 10.0

    def commit(self, latent, state=None):
        state = self.sampler.state if state is None else state
        self.kept.append((float(latent), state.next_frame))
        self.frame_kept[state.next_frame - 1].set()

    def finish(self):
        assert len(self.kept) == self.total
        self.finished = True


class _WorkerSampler:
    def __init__(self, render, state):
        self.render, self.state, self.settings = render, state, None

    def denoise(self, pose):
        latent = torch.tensor(self.render.denoised(int(pose.item())))
        self.state = SimpleNamespace(next_frame=self.state.next_frame + 1)
        return latent


class _Batched:
    """Stands in for `BatchedClosedLoopSampler`: one frame of each render, row by row."""

    def __init__(self, networks, renders, settings, states):
        self.samplers = [_WorkerSampler(render, state) for render, state in zip(renders, states)]

    def denoise(self, poses):
        return torch.stack([sampler.denoise(pose) for sampler, pose in zip(self.samplers, poses)])


def _run_worker(tmp_path, monkeypatch, jobs, videos_per_worker):
    """Drive a `RenderWorker` on stand-in renders as the batch driver does (K slots, refilled when a job ends)."""
    from talkingpose import animate, sampler
    from talkingpose.batch.manifest import JobSpec, RenderOptions
    from talkingpose.batch.worker import RenderWorker

    pipe = SimpleNamespace(networks=SimpleNamespace(fingerprint="stand-in"), renders={})
    monkeypatch.setattr(animate, "load_job_pipeline", lambda *args, **kwargs: pipe)
    monkeypatch.setattr(animate, "JobRender", _WorkerRender)
    monkeypatch.setattr(sampler, "BatchedClosedLoopSampler", _Batched)
    worker = RenderWorker(RenderOptions(random_weights="tiny", device="cpu"), str(tmp_path))
    queue = [JobSpec(line=i, out=out, driving=None, poses=None, source=None, keypoints=None, seed=1, beta=0.05,
                     frames=frames, fps=None, total=frames) for i, (out, frames) in enumerate(jobs)]
    active, events = [], []
    while active or queue:
        active += [queue.pop(0) for _ in range(min(videos_per_worker - len(active), len(queue)))]
        reply = worker.step([spec.__dict__ for spec in active])["events"]
        events += reply
        ended = {e["out"] for e in reply if e["kind"] in ("done", "failed")}
        active = [spec for spec in active if spec.out not in ended]
    return pipe.renders, events


@pytest.mark.parametrize("videos_per_worker", [1, 2])
def test_batch_worker_makes_poses_ahead_and_keeps_frames_during_the_denoising(tmp_path, monkeypatch, videos_per_worker):
    """Issue 17: the batch worker (alone, K = 1, and through the batched sampler, K = 2) denoised, then made the
    next pose and kept the frame, one after another; now both run beside the denoising, in the serial order."""
    renders, events = _run_worker(tmp_path, monkeypatch, [("a.mp4", 3), ("b.mp4", 5), ("c.mp4", 3)], videos_per_worker)
    assert not [e for e in events if e["kind"] == "failed"], events
    for out, render in renders.items():
        assert render.finished and render.kept == [(k * 10.0, k + 1) for k in range(render.total)], out
        # every reported frame was on the disk when the call returned; the last report is its end
        frames = [e["done"] for e in events if e["out"] == out and e["kind"] == "frame"]
        assert frames == list(range(1, render.total + 1))
        assert [e["kind"] for e in events if e["out"] == out][-1] == "done"


def test_batch_worker_keeps_the_frames_denoised_before_a_denoising_error(tmp_path, monkeypatch):
    """The frame denoised in the call before the failing one is still kept (and reported), as in the serial loop;
    the job fails with the error and its partner in the batch fails with it (one denoising for both)."""
    renders, events = _run_worker(tmp_path, monkeypatch, [("fails.mp4", 4), ("b.mp4", 4)], 2)
    assert renders["fails.mp4"].kept == [(0.0, 1), (10.0, 2)]
    assert renders["b.mp4"].kept == [(0.0, 1), (10.0, 2)]
    for out in ("fails.mp4", "b.mp4"):
        mine = [e for e in events if e["out"] == out]
        assert [e["kind"] for e in mine] == ["open", "frame", "frame", "failed"]
        assert "out of memory at frame 2" in mine[-1]["message"]

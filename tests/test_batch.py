"""`batch` and `evaluate` on a real local Ray (two CPU workers), tiny random weights, 64×64 frames, one step.

Ray starts once for this module; its temporary folder is removed afterwards and no Ray process may be left.
"""
import json
import re
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from talkingpose import animate
from talkingpose.batch.driver import BatchOptions, Listener, init_ray, run_batch
from talkingpose.batch.manifest import RenderOptions, animate_job, load_manifest
from talkingpose.cli import main as cli_main
from talkingpose.errors import TalkingPoseError
from talkingpose.metrics import psnr_8bit
from talkingpose.sampler import SamplerSettings
from talkingpose.video_io import VideoReader

from helpers import PACK_ROOT, SHARED

DRIVING = SHARED / "samples" / "driving"
POSES = SHARED / "samples" / "dwpose"
# on the CPU also where a GPU is present (the references are rendered in this process, the workers get no GPU)
OPTIONS = RenderOptions(width=64, height=64, steps=1, random_weights="tiny", seed=42, device="cpu")
# name, clip, seed, beta, frames: three jobs of different length, seed and beta
JOBS = [("a.mp4", "vid1", 7, None, 3), ("b.mp4", "vid2", None, 0.2, 5), ("c.mp4", "vid3", 11, None, 3)]


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


@pytest.fixture(scope="module")
def ray_local():
    if not (DRIVING / "vid1.mp4").is_file():
        pytest.skip(f"shared samples not found in {DRIVING}")
    import ray

    # Short: Ray's socket paths must stay under 108 characters. A token in the environment keeps Ray's token
    # authentication on without writing one into the home folder.
    temp = tempfile.mkdtemp(prefix="tpray", dir="/tmp")
    saved = os.environ.get("RAY_AUTH_TOKEN")
    os.environ["RAY_AUTH_TOKEN"] = uuid.uuid4().hex + uuid.uuid4().hex
    init_ray(num_cpus=2, num_gpus=0, _temp_dir=temp)
    try:
        yield ray
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("RAY_AUTH_TOKEN", None)
        else:
            os.environ["RAY_AUTH_TOKEN"] = saved
        left = _processes_mentioning(temp)
        for line in left:  # never leave them running, even when the check below fails
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, "Ray processes left after shutdown:\n" + "\n".join(left)


def _manifest(path: Path, jobs=JOBS) -> Path:
    lines = ["out,driving,poses,seed,beta,frames"]
    for out, clip, seed, beta, frames in jobs:
        lines.append(f"{out},{DRIVING / clip}.mp4,{POSES / clip}.mp4,{'' if seed is None else seed},"
                     f"{'' if beta is None else beta},{frames}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _frames(path: Path) -> list[np.ndarray]:
    with VideoReader(path) as reader:
        return list(reader)


@contextmanager
def worker_threads():
    """A worker of one CPU gets one torch thread from Ray; float sums are split by thread, so renders compared
    bit for bit must use as many threads as the worker does."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _animate_one_by_one(tmp_path: Path, jobs=JOBS) -> dict[str, list[np.ndarray]]:
    """The same jobs through the `animate` command, one run each."""
    made = {}
    for out, clip, seed, beta, frames in jobs:
        target = tmp_path / "animate" / out
        args = ["animate", "--driving", f"{DRIVING / clip}.mp4", "--poses", f"{POSES / clip}.mp4", "--random-weights",
                "--size", "64x64", "--steps", "1", "--frames", str(frames), "--seed", str(42 if seed is None else seed),
                "--beta", str(0.05 if beta is None else beta), "--device", "cpu", "--out", str(target)]
        with worker_threads():
            assert cli_main(args) == 0
        made[out] = _frames(target)
    return made


class Recorder(Listener):
    def __init__(self):
        self.events, self.results = [], []

    def event(self, event, worker):
        self.events.append((dict(event), dict(worker)))

    def finished(self, result):
        self.results.append(result)


@pytest.fixture(scope="module")
def animated(ray_local, tmp_path_factory):
    return _animate_one_by_one(tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="module")
def two_worker_run(ray_local, tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch")
    recorder = Recorder()
    results = run_batch(_manifest(folder / "jobs.csv"), folder / "out", OPTIONS,
                        BatchOptions(workers=2, cpus_per_worker=1), listener=recorder)
    return folder, results, recorder


def test_three_jobs_on_two_workers_equal_animate_one_by_one(two_worker_run, animated):
    folder, results, recorder = two_worker_run
    assert [(r.job, r.status, r.frames) for r in results] == [("a.mp4", "done", 3), ("b.mp4", "done", 5), ("c.mp4", "done", 3)]
    assert len({pid for _, worker in recorder.events for pid in [worker["pid"]]}) == 2  # both workers rendered
    for out, frames in animated.items():
        batch_frames = _frames(folder / "out" / out)
        assert len(batch_frames) == len(frames)
        for mine, theirs in zip(batch_frames, frames):
            np.testing.assert_array_equal(mine, theirs)
    summary = json.loads((folder / "out" / "summary.json").read_text())
    assert summary["summary"]["done"] == 3 and summary["summary"]["frames_rendered"] == 11
    assert [job["status"] for job in summary["jobs"]] == ["done"] * 3
    assert all(job["seconds"] > 0 and job["s_per_frame"] > 0 for job in summary["jobs"])
    assert not list((folder / "out").glob("*.partial"))


def test_rerun_skips_finished_jobs_and_continues_an_unfinished_one(two_worker_run, animated, tmp_path):
    folder, _, _ = two_worker_run
    before = {p.name: p.stat().st_mtime_ns for p in (folder / "out").glob("*.mp4")}
    results = run_batch(folder / "jobs.csv", folder / "out", OPTIONS, BatchOptions(workers=2, cpus_per_worker=1))
    assert [r.status for r in results] == ["skipped"] * 3
    assert {p.name: p.stat().st_mtime_ns for p in (folder / "out").glob("*.mp4")} == before

    # An `animate` run of job b stopped after two frames (segments of 2 frames): the batch continues it.
    out_dir = tmp_path / "out"
    job = animate.AnimateJob(out=out_dir / "b.mp4", driving=DRIVING / "vid2.mp4", poses=POSES / "vid2.mp4", width=64,
                             height=64, frames=5, settings=SamplerSettings(steps=1, beta=0.2, seed=42),
                             random_weights="tiny", segment_frames=2, device="cpu")

    def stop_after_two(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), worker_threads():
        animate.run(job, stop_after_two)
    options = replace(OPTIONS, segment_frames=2)
    results = run_batch(_manifest(tmp_path / "jobs.csv", [JOBS[1]]), out_dir, options, BatchOptions(workers=1, cpus_per_worker=1))
    assert results[0].status == "done" and results[0].resumed_at == [2]
    # segments of 2 frames are encoded on their own, so compare the pixels the sampler made with animate's
    reference = tmp_path / "whole.mp4"
    with worker_threads():
        animate.run(replace(job, out=reference))
    for mine, theirs in zip(_frames(out_dir / "b.mp4"), _frames(reference), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_a_worker_killed_mid_job_gives_the_same_video(ray_local, tmp_path):
    options = replace(OPTIONS, segment_frames=2)
    job = ("k.mp4", "vid1", 5, None, 6)
    killed = []

    class KillAtFrameThree(Recorder):
        def event(self, event, worker):
            super().event(event, worker)
            if event["kind"] == "frame" and event["done"] == 3 and not killed:
                os.kill(worker["pid"], signal.SIGKILL)  # frames 0-2 are kept, each with the sampler state after it
                killed.append(worker["pid"])

    recorder = KillAtFrameThree()
    results = run_batch(_manifest(tmp_path / "jobs.csv", [job]), tmp_path / "out", options,
                        BatchOptions(workers=1, cpus_per_worker=1), listener=recorder)
    assert killed and results[0].status == "done", results[0].message
    assert results[0].resumed_at == [3]  # the restarted worker continued from the saved state, not from frame 0
    assert {w["pid"] for _, w in recorder.events} - set(killed)  # a new worker process finished it
    reference = tmp_path / "uninterrupted.mp4"
    with worker_threads():
        animate.run(animate.AnimateJob(out=reference, driving=DRIVING / "vid1.mp4", poses=POSES / "vid1.mp4", width=64,
                                       height=64, frames=6, settings=SamplerSettings(steps=1, seed=5),
                                       random_weights="tiny", segment_frames=2, device="cpu"))
    for mine, theirs in zip(_frames(tmp_path / "out" / "k.mp4"), _frames(reference), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_two_videos_per_worker_refill_slots_within_the_batched_tolerance(ray_local, animated, tmp_path):
    recorder = Recorder()
    results = run_batch(_manifest(tmp_path / "jobs.csv"), tmp_path / "out", OPTIONS,
                        BatchOptions(workers=1, cpus_per_worker=1, videos_per_worker=2), listener=recorder)
    assert [r.status for r in results] == ["done"] * 3
    opened = [e["out"] for e, _ in recorder.events if e["kind"] == "open"]
    assert opened == ["a.mp4", "b.mp4", "c.mp4"]
    # c took a's slot as soon as a ended, and was rendered together with b, which went on from its own state
    kinds = [(e["out"], e["kind"]) for e, _ in recorder.events]
    assert kinds.index(("a.mp4", "done")) < kinds.index(("c.mp4", "open")) < kinds.index(("b.mp4", "done"))
    assert kinds.index(("c.mp4", "frame")) < kinds.index(("b.mp4", "done"))
    for out, frames in animated.items():
        batch_frames = _frames(tmp_path / "out" / out)
        assert len(batch_frames) == len(frames)
        for mine, theirs in zip(batch_frames, frames):
            # Rows of one batch round differently from single runs: latents within the batched sampler's 1e-3 (see
            # test_sampler and the next test). The random tiny VAE magnifies that, and H.264 adds its own: 35-51 dB
            # measured, where another seed's frame is noise against it (about 14 dB).
            assert psnr_8bit(theirs, mine) > 30


def _record_committed_latents(monkeypatch) -> dict:
    """Every latent a render commits, by (output folder name, output file name), in commit order."""
    latents = {}
    commit = animate.JobRender.commit

    def keep_latent(render, latent, state=None):
        latents.setdefault((render.job.out.parent.name, render.job.out.name), []).append(latent.clone())
        commit(render, latent, state)

    monkeypatch.setattr(animate.JobRender, "commit", keep_latent)
    return latents


def test_worker_with_two_slots_keeps_each_latent_within_the_batched_tolerance(tmp_path, monkeypatch):
    """The worker itself (no Ray), K = 2: every latent of every video within 1e-3 of the video rendered alone,
    also for the video that goes on alone and for the one that joins it after the first ended."""
    if not (DRIVING / "vid1.mp4").is_file():
        pytest.skip(f"shared samples not found in {DRIVING}")
    from talkingpose.batch.manifest import load_manifest
    from talkingpose.batch.worker import RenderWorker

    latents = _record_committed_latents(monkeypatch)
    specs, errors = load_manifest(_manifest(tmp_path / "jobs.csv"), OPTIONS)
    assert not errors
    with worker_threads():
        worker = RenderWorker(OPTIONS, str(tmp_path / "batched"))
        active, queue = [], list(specs)
        while active or queue:
            active += [queue.pop(0) for _ in range(min(2 - len(active), len(queue)))]
            events = worker.step([s.__dict__ for s in active])["events"]
            ended = {e["out"] for e in events if e["kind"] in ("done", "failed")}
            assert all(e["kind"] != "failed" for e in events), events
            active = [s for s in active if s.out not in ended]
        for spec in specs:
            animate.run(animate_job(spec, OPTIONS, tmp_path / "alone", resume=False))
    for spec in specs:
        together, alone = torch.stack(latents["batched", spec.out]), torch.stack(latents["alone", spec.out])
        torch.testing.assert_close(together, alone, rtol=0, atol=1e-3)


def test_worker_with_two_slots_equals_the_serial_batched_loop_bit_for_bit(tmp_path, monkeypatch):
    """Issue 17: the worker makes poses ahead and keeps each frame beside the next denoising; its latents and
    files are those of the serial loop (pose, batched denoise, keep, one after another) bit for bit."""
    if not (DRIVING / "vid1.mp4").is_file():
        pytest.skip(f"shared samples not found in {DRIVING}")
    from talkingpose.batch.worker import RenderWorker
    from talkingpose.sampler import BatchedClosedLoopSampler

    latents = _record_committed_latents(monkeypatch)
    options = replace(OPTIONS, segment_frames=2)
    specs, errors = load_manifest(_manifest(tmp_path / "jobs.csv", [("a.mp4", "vid1", 7, None, 4),
                                                                      ("b.mp4", "vid2", None, 0.2, 4)]), options)
    assert not errors
    with worker_threads():
        worker = RenderWorker(options, str(tmp_path / "worker"))
        ended = set()
        while len(ended) < len(specs):
            events = worker.step([s.__dict__ for s in specs if s.out not in ended])["events"]
            assert all(e["kind"] != "failed" for e in events), events
            ended |= {e["out"] for e in events if e["kind"] == "done"}
        renders = [animate.JobRender(animate_job(spec, options, tmp_path / "serial"), worker.pipe) for spec in specs]
        batched = BatchedClosedLoopSampler(worker.pipe.networks, [r.appearance for r in renders],
                                           [r.sampler.settings for r in renders], states=[r.sampler.state for r in renders])
        for render, sampler in zip(renders, batched.samplers):
            render.sampler = sampler
        while (poses := [render.next_pose() for render in renders])[0] is not None:
            for render, latent in zip(renders, batched.denoise(torch.cat(poses))):
                render.commit(latent)
        for render in renders:
            render.finish()
    for spec in specs:
        serial, worker_made = latents["serial", spec.out], latents["worker", spec.out]
        assert len(serial) == len(worker_made) == 4
        for a, b in zip(serial, worker_made):
            torch.testing.assert_close(b, a, rtol=0, atol=0)
        assert (tmp_path / "worker" / spec.out).read_bytes() == (tmp_path / "serial" / spec.out).read_bytes()


def test_bad_rows_fail_alone_with_their_reason(ray_local, tmp_path):
    good = {"out": "good.mp4", "driving": str(DRIVING / "vid1.mp4"), "poses": str(POSES / "vid1.mp4"), "frames": 2}
    (tmp_path / "not_a_video.mp4").write_text("hello")
    (tmp_path / "not_an_image.png").write_text("hello")
    rows = [
        good,
        {**good, "out": "missing.mp4", "driving": str(tmp_path / "nowhere.mp4")},
        {**good, "out": "typo.mp4", "sede": 3},
        {**good},  # the same out name again
        {**good, "out": "unreadable.mp4", "driving": "not_a_video.mp4", "poses": None},  # relative to the manifest
        {**good, "out": "seed.mp4", "seed": "many"},
        {**good, "out": "face.mp4", "source": "not_an_image.png"},  # fails on the worker, when the job opens
    ]
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows) + "[1, 2]\n")
    results = run_batch(manifest, tmp_path / "out", OPTIONS, BatchOptions(workers=2, cpus_per_worker=1))
    status = {r.line: (r.status, r.message) for r in results}
    assert status[1][0] == "done" and (tmp_path / "out" / "good.mp4").is_file()
    assert status[2][0] == "failed" and "nowhere.mp4 does not exist" in status[2][1]
    assert status[3][0] == "failed" and "unknown column(s) sede" in status[3][1]
    assert status[4][0] == "failed" and "already the output of line 1" in status[4][1]
    assert status[5][0] == "failed" and "Could not read" in status[5][1] and "not_a_video.mp4" in status[5][1]
    assert status[6][0] == "failed" and "seed 'many' is not a whole number" in status[6][1]
    assert status[7][0] == "failed" and "not_an_image.png" in status[7][1]
    assert status[8][0] == "failed" and "must be an object" in status[8][1]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["summary"]
    assert (summary["done"], summary["failed"]) == (1, 7)


def test_unusable_output_folder_and_unreachable_cluster_are_refused_clearly(tmp_path):
    manifest = _manifest(tmp_path / "jobs.csv", JOBS[:1])
    (tmp_path / "a_file").write_text("")
    with pytest.raises(TalkingPoseError, match="Cannot write to the output folder"):
        run_batch(manifest, tmp_path / "a_file" / "out", OPTIONS)
    with pytest.raises(TalkingPoseError, match="No Ray cluster answers at 127.0.0.1:1 .*ray start --head"):
        init_ray("127.0.0.1:1")


def test_evaluate_on_the_shared_clips_matches_the_metrics_command(ray_local, tmp_path, capsys):
    out = tmp_path / "eval"
    code = cli_main(["evaluate", "--dataset", str(DRIVING), "--poses-dir", str(POSES), "--out-dir", str(out), "--frames", "4",
                     "--delta", "1", "2", "--random-weights", "--size", "64x64", "--steps", "1", "--device", "cpu", "--workers", "2",
                     "--cpus-per-worker", "1"])
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads((out / "metrics.json").read_text())
    assert [v["video"] for v in report["videos"]] == ["vid1.mp4", "vid2.mp4", "vid3.mp4"]
    csv_lines = (out / "metrics.csv").read_text().splitlines()
    assert csv_lines[0] == "video,frames,tje_d2,tje_d1,psnr_float,psnr_8bit,ssim"
    assert [line.split(",")[0] for line in csv_lines[1:]] == ["vid1.mp4", "vid2.mp4", "vid3.mp4", "mean", "frame-weighted mean"]
    for video in report["videos"]:
        assert video["frames"] == 4 and video["video"] in printed
        figures = tmp_path / f"{video['video']}.json"
        assert cli_main(["metrics", "--real", video["real"], "--generated", video["generated"], "--json", str(figures)]) == 0
        alone = json.loads(figures.read_text())
        assert video["tje_d2"] == alone["tje"]
        assert (video["psnr_float"], video["psnr_8bit"], video["ssim"]) == (alone["psnr_float"], alone["psnr_8bit"], alone["ssim"])
        assert cli_main(["metrics", "--real", video["real"], "--generated", video["generated"], "--delta", "1",
                         "--metrics", "tje", "--json", str(figures)]) == 0
        assert video["tje_d1"] == json.loads(figures.read_text())["tje"]
    tje = [v["tje_d2"] for v in report["videos"]]
    assert report["overall"]["mean_tje_d2"] == pytest.approx(sum(tje) / 3)
    assert report["overall"]["weighted_tje_d2"] == pytest.approx(sum(tje) / 3)  # 2 terms each
    assert "frame-weighted mean" in printed


def test_without_ray_the_commands_say_how_to_install_it(tmp_path):
    code = ("import sys; sys.modules['ray'] = None\n"
            "from talkingpose.cli import main\n"
            f"sys.exit(main(['batch', {str(tmp_path / 'jobs.csv')!r}, '--out-dir', {str(tmp_path / 'out')!r}]))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=PACK_ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert "Ray, which is not installed" in result.stderr and "pip install" in result.stderr and "ray[default]" in result.stderr


# ------------------------------------------------------------------------------------------ nothing lost
def test_planted_links_at_the_temporary_names_change_nothing_outside_the_out_folder(ray_local, tmp_path):
    """Issue 22, finding 3: `summary.json`, the done records and evaluate's files went through fixed `NAME.tmp`
    names with a plain write, so a link planted there made the command overwrite the file it points to. Every
    name the batch and evaluate ever used for a temporary file, and a killed writer's durable name, gets a link."""
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "vid1.mp4").symlink_to(DRIVING / "vid1.mp4")
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("outside the out folder")
    out = tmp_path / "eval"
    planted = [out / "jobs.jsonl.tmp", out / "metrics.json.tmp", out / "metrics.csv.tmp",
               out / "videos" / "summary.json.tmp", out / "videos" / ".batch" / "vid1.mp4.json.tmp"]
    killed_writer = out / "videos" / ".summary.json.999999999.abcdefgh.tmp"
    for link in [*planted, killed_writer]:
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(elsewhere)
    assert cli_main(["evaluate", "--dataset", str(dataset), "--poses-dir", str(POSES), "--out-dir", str(out),
                     "--frames", "2", "--random-weights", "--size", "64x64", "--steps", "1", "--device", "cpu",
                     "--workers", "1", "--cpus-per-worker", "1"]) == 0
    assert elsewhere.read_text() == "outside the out folder"
    assert all(link.is_symlink() and link.resolve() == elsewhere for link in planted)
    assert not os.path.lexists(killed_writer)  # the link itself removed as a dead writer's file, not its target
    assert json.loads((out / "metrics.json").read_text())["videos"][0]["frames"] == 2
    assert json.loads((out / "videos" / "summary.json").read_text())["summary"]["done"] == 1


def test_evaluate_never_replaces_its_files_without_overwrite(tmp_path, monkeypatch):
    """Issue 22, finding 4: `evaluate` replaced jobs.jsonl, metrics.json and metrics.csv already in its out folder
    (an earlier evaluation's, or the user's own). Refused before any render; the job list of an interrupted run of
    the same evaluation is no obstacle, and --overwrite replaces."""
    from talkingpose.batch import evaluate as evaluate_module

    class Started(Exception):
        """Ray would start here: the checks let the evaluation go on."""

    def ray_session(address=None):
        raise Started

    monkeypatch.setattr(evaluate_module, "ray_session", ray_session)
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "vid1.mp4").symlink_to(DRIVING / "vid1.mp4")
    out = tmp_path / "eval"
    out.mkdir()
    run = lambda **kw: evaluate_module.evaluate(dataset, out, OPTIONS, frames=2, **kw)  # noqa: E731
    for name in ("metrics.json", "metrics.csv", "jobs.jsonl"):
        (out / name).write_text("the user's own file")
        with pytest.raises(TalkingPoseError, match=f"{out / name} already exists .*add --overwrite to replace it"):
            run()
        assert (out / name).read_text() == "the user's own file"
        (out / name).unlink()
    with pytest.raises(Started):
        run()  # writes the job list, then starts Ray
    written = (out / "jobs.jsonl").read_text()
    with pytest.raises(Started):
        run()  # a rerun after Ctrl-C: the same job list is there
    (out / "metrics.json").write_text("an earlier evaluation")
    with pytest.raises(Started):
        run(overwrite=True)
    assert (out / "jobs.jsonl").read_text() == written


def test_job_lists_read_numbers_alike_in_csv_and_json_and_refuse_outs_inside_outs(tmp_path):
    """Issue 22, finding 7: frames 1e9 was refused in CSV but taken in JSON Lines, JSON true was 1 frame, and a job
    whose out lay inside another job's (n.mp4/i.mp4 beside n.mp4) rendered every frame, then failed."""
    from talkingpose.batch.manifest import load_manifest

    row = {"driving": str(DRIVING / "vid1.mp4"), "poses": str(POSES / "vid1.mp4")}
    rows = [{**row, "out": "a.mp4", "frames": 1e9}, {**row, "out": "b.mp4", "frames": True},
            {**row, "out": "c.mp4", "frames": 2.0}, {**row, "out": "d.mp4", "beta": float("nan")},
            {**row, "out": "n.mp4", "frames": 2}, {**row, "out": "n.mp4/i.mp4", "frames": 2},
            {**row, "out": "m.mp4/k.mp4", "frames": 2}, {**row, "out": "M.mp4", "frames": 2}]
    jsonl = tmp_path / "jobs.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    specs, errors = load_manifest(jsonl, OPTIONS)
    messages = {e.line: e.message for e in errors}
    assert "frames 1000000000.0 is not a whole number (write it with digits only)" in messages[1]
    assert "frames True is not a whole number" in messages[2]
    assert "frames 2.0 is not a whole number" in messages[3]
    assert "beta nan is not a finite number" in messages[4]
    assert "out 'n.mp4/i.mp4' would be inside the output of line 5" in messages[6]
    assert "out 'M.mp4' is a folder of the output of line 7" in messages[8]  # one name on NTFS and macOS
    assert [s.out for s in specs] == ["n.mp4", "m.mp4/k.mp4"]
    csv = tmp_path / "jobs.csv"
    csv.write_text(f"out,driving,poses,frames\na.mp4,{row['driving']},{row['poses']},1e9\n")
    assert "frames '1e9' is not a whole number" in load_manifest(csv, OPTIONS)[1][0].message


def test_a_subfolder_that_is_a_link_fails_its_job_and_nothing_is_written_outside(tmp_path):
    """Issue 22, finding 7: `out` sub/a.mp4 with `sub` a link rendered into the folder the link points to."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "sub").symlink_to(elsewhere)
    (out_dir / ".batch").mkdir()
    (out_dir / ".batch" / "deep").symlink_to(elsewhere)  # where the done record of deep/b.mp4 would go
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(f"out,driving,poses,frames\nsub/a.mp4,{DRIVING / 'vid1.mp4'},{POSES / 'vid1.mp4'},2\n"
                        f"deep/b.mp4,{DRIVING / 'vid1.mp4'},{POSES / 'vid1.mp4'},2\n")
    first, second = run_batch(manifest, out_dir, OPTIONS)
    assert first.status == "failed" and f"{out_dir / 'sub'} is a link; outputs stay inside the output folder" in first.message
    assert second.status == "failed" and f"{out_dir / '.batch' / 'deep'} is a link" in second.message
    assert list(elsewhere.iterdir()) == []


def test_a_long_job_list_check_reports_progress_and_ctrl_c_points_to_no_summary(tmp_path, monkeypatch, capsys):
    """Issue 22, finding 7: checking a 10,000-row list took 45 s without a word, and Ctrl-C during it pointed to a
    summary.json that was never written. The progress lines go to stderr and survive a cp1252 pipe."""
    from talkingpose.batch import manifest as manifest_module
    from talkingpose.cli import batch as batch_command

    rows = 8
    jobs = _manifest(tmp_path / "jobs.csv", [(f"j{i}.mp4", "vid1", None, None, 2) for i in range(rows)])
    checked = []
    parse_row = manifest_module.parse_row

    def interrupted_at_row_6(line, row, base, options):
        checked.append(line)
        if len(checked) == 6:
            raise KeyboardInterrupt
        return parse_row(line, row, base, options)

    monkeypatch.setattr(manifest_module, "parse_row", interrupted_at_row_6)
    monkeypatch.setattr(batch_command, "CHECK_REPORT_SECONDS", 0.0, raising=False)
    out = tmp_path / "out"
    assert cli_main(["batch", str(jobs), "--out-dir", str(out), "--random-weights"]) == 130
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("checking")] == [
        f"checking the job list: {n} of {rows} rows" for n in range(1, 6)]
    assert "summary.json" not in err and "run the same command again to continue." in err
    assert not (out / "summary.json").exists()
    err.encode("cp1252")  # what a Windows console pipe takes


def test_the_worker_tells_a_run_of_other_settings_by_its_error_type(tmp_path):
    """Issue 20, item 4: the worker recognised an unfinished render of other settings by the wording of the error
    message; it now goes by the error's type (RunMismatch), with the same sentence."""
    from talkingpose.batch.manifest import load_manifest
    from talkingpose.batch.worker import RenderWorker

    out_dir = tmp_path / "out"
    job = animate.AnimateJob(out=out_dir / "a.mp4", driving=DRIVING / "vid1.mp4", poses=POSES / "vid1.mp4", width=64,
                             height=64, frames=3, settings=SamplerSettings(steps=1, seed=1), random_weights="tiny",
                             segment_frames=2, device="cpu")

    def stop_after_two(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        animate.run(job, stop_after_two)
    specs, errors = load_manifest(_manifest(tmp_path / "jobs.csv", [("a.mp4", "vid1", 2, None, 3)]), OPTIONS)
    (event,) = RenderWorker(replace(OPTIONS, segment_frames=2), str(out_dir)).step([specs[0].__dict__])["events"]
    assert event["kind"] == "failed"
    assert event["message"].startswith(f"its unfinished render in {out_dir / 'a.mp4.partial'} was made with other "
                                       "inputs or settings (Cannot resume: the run differs from the interrupted one")
    assert "seed: 1 before, 2 now" in event["message"]


def test_output_names_windows_cannot_hold_or_that_differ_only_in_case_are_row_errors(tmp_path):
    """A job list travels between machines: `CON.mp4` is the console device on Windows and `Clip.mp4`/`clip.mp4`
    are one file there (and on macOS), so such rows fail alone, on every system, before anything is rendered."""
    if not (DRIVING / "vid1.mp4").is_file():
        pytest.skip(f"shared samples not found in {DRIVING}")
    good = {"driving": str(DRIVING / "vid1.mp4"), "poses": str(POSES / "vid1.mp4"), "frames": 2}
    rows = [{**good, "out": "Clip.mp4"}, {**good, "out": "clip.MP4"}, {**good, "out": "con.mp4"},
            {**good, "out": "takes/aux.1.mp4"}, {**good, "out": "take 2 /a.mp4"}, {**good, "out": "what?.mp4"}]
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    specs, errors = load_manifest(manifest, OPTIONS)
    assert [s.out for s in specs] == ["Clip.mp4"]
    assert [(e.line, e.message) for e in errors] == [
        (2, "line 2: out 'clip.MP4' is already the output of line 1; give each job its own name"),
        (3, "line 3: The output name 'con.mp4' cannot be used: 'con.mp4' is a name Windows keeps for a device (CON, "
            "PRN, AUX, NUL, COM1-COM9, LPT1-LPT9, with any extension), so nothing would be saved; choose another name."),
        (4, "line 4: The output name 'takes/aux.1.mp4' cannot be used: 'aux.1.mp4' is a name Windows keeps for a "
            "device (CON, PRN, AUX, NUL, COM1-COM9, LPT1-LPT9, with any extension), so nothing would be saved; "
            "choose another name."),
        (5, "line 5: The output name 'take 2 /a.mp4' cannot be used: 'take 2 ' ends in a dot or a space, which "
            "Windows drops from file names; remove it."),
        (6, "line 6: The output name 'what?.mp4' cannot be used: 'what?.mp4' holds '?', which Windows does not allow "
            "in file names; use letters, digits, spaces, '-', '_' and '.'."),
    ]


def test_on_windows_a_job_whose_frames_would_pass_max_path_fails_alone_before_any_work(tmp_path, monkeypatch):
    if not (DRIVING / "vid1.mp4").is_file():
        pytest.skip(f"shared samples not found in {DRIVING}")
    from talkingpose import file_names

    monkeypatch.setattr(file_names, "on_windows", lambda: True)  # as sys.platform == "win32"
    out_dir = tmp_path / "out"
    deep = "/".join(["d" * 60] * 3) + "/long.mp4"
    manifest = _manifest(tmp_path / "jobs.csv", [(deep, "vid1", None, None, 2)])
    results = run_batch(manifest, out_dir, OPTIONS, BatchOptions(workers=1))  # no job left: Ray is never started
    assert [(r.status, r.job) for r in results] == [("failed", deep)]
    assert re.fullmatch(rf"line 2: The output {re.escape(str(out_dir / deep))} would need paths of \d+ characters "
                        r"\(the files written for it\); Windows allows 259\. Shorten --out-dir or the row's `out` by "
                        r"at least \d+ characters\.", results[0].message), results[0].message
    assert not (out_dir / ("d" * 60)).exists()


def test_a_workers_output_never_ends_a_job_whatever_it_prints(ray_local):
    """Ray writes a worker's output to log files it opens as UTF-8 (strict): a file name with an undecodable byte
    (Linux) would end the job, and with RAY_LOG_TO_STDERR so would a Greek letter on a cp1252 console (Windows).
    A render worker's streams escape what they cannot encode."""
    from talkingpose.batch.worker import RenderWorker

    def speak(worker):
        print("clip-\u03b2 \u2192 \udcff")  # a Greek letter, an arrow, an undecodable byte of a Linux file name
        return sys.stdout.encoding, sys.stdout.errors, sys.stderr.errors

    worker = ray_local.remote(RenderWorker).options(num_cpus=0).remote(OPTIONS, "/nonexistent")
    assert ray_local.get(worker.__ray_call__.remote(speak)) == ("utf-8", "backslashreplace", "backslashreplace")
    ray_local.kill(worker)

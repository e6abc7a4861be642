"""The headless job under faults: a crash, a kill or a full disk at every point where it writes a file, then
--resume; the output checks made before any work; the kept frames of an interrupted render never deleted
silently; a stranger's folder never touched.

Most tests run `animate.run` with a stand-in for the networks (a deterministic closed loop over the real
SamplerState, so states are saved, validated and loaded for real) to keep them quick on a loaded machine;
tests/test_cli.py resumes with the real networks.
"""
import errno
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch

from talkingpose import animate, durable, memory
from talkingpose.errors import TalkingPoseError
from talkingpose.sampler import SamplerSettings, SamplerState, initial_noise
from talkingpose.segmented_writer import SegmentedVideoWriter

from helpers import PACK_ROOT, SHARED

DRIVING = SHARED / "samples" / "driving" / "vid1.mp4"
POSES = SHARED / "samples" / "dwpose" / "vid1.mp4"
FRAMES, SEGMENT = 7, 3  # two whole segments and a last one of one frame

pytestmark = pytest.mark.skipif(not DRIVING.is_file(), reason=f"shared sample {DRIVING} not found")


class _Sampler:
    """A closed loop like the real one: each frame depends on the pose and on the previous frame's latent."""

    def __init__(self, settings, state, width, height):
        self.state = state or SamplerState(initial_noise(settings.seed, 4, height, width), None, 0, settings, width,
                                           height, "stand-in", "look")

    def denoise(self, pose_value):
        latent = self.state.start_latent() * 0.9 + pose_value
        self.state = self.state.advanced(latent)
        return latent


class _Pipeline:
    networks = SimpleNamespace(fingerprint="stand-in")

    def __init__(self, calls):
        self.calls = calls

    def encode_appearance(self, source, width, height, fit):
        return SimpleNamespace(width=width, height=height, fit=fit)

    def sampler(self, appearance, settings, state):
        return _Sampler(settings, state, appearance.width, appearance.height)

    def pose_pixels(self, render, appearance):
        return float(np.asarray(render, dtype=np.float32).mean() / 255)

    def decode(self, latents):
        self.calls.append(1)
        picture = torch.sigmoid(latents[:, :3]).repeat_interleave(8, 2).repeat_interleave(8, 3)
        return picture


@pytest.fixture
def stand_in(monkeypatch):
    """Networks replaced by the stand-in; returns the list that counts decoded frames."""
    calls = []
    monkeypatch.setattr("talkingpose.pipeline.load_pipeline", lambda *a, **k: _Pipeline(calls))
    monkeypatch.setattr("talkingpose.random_weights.write_random_weights", lambda *a: dict.fromkeys(("model", "vae", "image_encoder")))
    return calls


def _job(out, **changes):
    fields = dict(out=Path(out), driving=DRIVING, poses=POSES, width=64, height=64, frames=FRAMES,
                  settings=SamplerSettings(steps=1, seed=3), random_weights="tiny", segment_frames=SEGMENT)
    fields.update(changes)
    return animate.AnimateJob(**fields)


def _decoded(path):
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run's file."""
    out = tmp_path_factory.mktemp("whole") / "whole.mp4"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("talkingpose.pipeline.load_pipeline", lambda *a, **k: _Pipeline([]))
        patch.setattr("talkingpose.random_weights.write_random_weights", lambda *a: dict.fromkeys(("model", "vae", "image_encoder")))
        animate.run(_job(out))
    return out.read_bytes()


class _Crash(BaseException):
    """A crash or kill at one moment: nothing after it runs, as with SIGKILL."""


def _fail_at_commit(monkeypatch, number, failure):
    """The `number`-th durable file commit (frames, states, segments, the output) fails with `failure` before it
    renames anything; returns the list of what each commit was writing."""
    real_commit = durable.commit
    seen = []

    def commit(temporary, path):
        seen.append(Path(path).name)
        if len(seen) == number:
            if isinstance(failure, _Crash):
                raise failure
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_commit(temporary, path)

    monkeypatch.setattr(durable, "commit", commit)
    return seen


# 7 frames: a frame and its state each (14), segments after frames 3 and 6 (2), the marker (1), the output (1)
COMMIT_POINTS = list(range(1, 19))


@pytest.mark.parametrize("point", COMMIT_POINTS)
@pytest.mark.parametrize("failure", ["disk full", "crash"])
def test_resume_after_a_failure_at_any_commit_point_gives_the_same_file(tmp_path, monkeypatch, stand_in, reference,
                                                                        point, failure):
    out = tmp_path / "cut.mp4"
    real_commit = durable.commit
    seen = _fail_at_commit(monkeypatch, point, _Crash() if failure == "crash" else None)
    if failure == "crash":
        with pytest.raises(_Crash):
            animate.run(_job(out))
    else:
        with pytest.raises(TalkingPoseError, match=r"No space left on device") as refused:
            animate.run(_job(out))
        assert point == 1 or "--resume" in str(refused.value)  # point 1: nothing made yet
    assert len(seen) == point, f"the run has fewer than {point} commit points: {seen}"
    monkeypatch.setattr(durable, "commit", real_commit)
    if not out.exists():
        assert animate.run(_job(out, resume=True)) == out
    assert out.read_bytes() == reference  # byte for byte: segment boundaries do not depend on the interruption
    assert not (tmp_path / "cut.mp4.partial").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mp4"]  # no temporary file left behind


def test_a_crash_loses_at_most_the_frame_being_made(tmp_path, monkeypatch, stand_in):
    out = tmp_path / "k.mp4"

    def stop_after_5(done, total):
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        animate.run(_job(out), stop_after_5)
    stand_in.clear()
    animate.run(_job(out, resume=True))
    assert len(stand_in) == FRAMES - 5  # frames 0-4 were kept, not made again
    # a kill (no handler runs) between a frame and its state: only that frame is made again
    out2 = tmp_path / "k2.mp4"
    real_commit = durable.commit
    seen = _fail_at_commit(monkeypatch, 12, _Crash())  # marker, then frame 0, state 1, …, frame 4, state 5
    with pytest.raises(_Crash):
        animate.run(_job(out2))
    assert seen[-2:] == ["frame_0000004.rgb", "state-0000005.safetensors"]
    monkeypatch.setattr(durable, "commit", real_commit)
    stand_in.clear()
    animate.run(_job(out2, resume=True))
    assert len(stand_in) == FRAMES - 4


def _tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


def test_a_really_full_disk_at_several_points_then_resume_gives_the_same_file(tmp_path, stand_in, reference):
    """A small tmpfs fills up for real (where this machine lets us mount one; the commit-point test above injects
    the same error everywhere else)."""
    if os.geteuid() != 0 or not _tmpfs(tmp_path / "probe", "64k"):
        pytest.skip("cannot mount a tmpfs here")
    subprocess.run(["umount", str(tmp_path / "probe")], check=True)
    failures = set()
    for kib in (16, 24, 32, 40, 48, 56, 64, 80, 96, 128):
        disk = tmp_path / f"disk{kib}"
        assert _tmpfs(disk, f"{kib}k")
        try:
            out = disk / "out.mp4"
            try:
                animate.run(_job(out))
            except TalkingPoseError as exc:
                assert "No space left on device" in str(exc)
                failures.add(str(exc).replace(str(disk), "").split(" (")[0])
                subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
                animate.run(_job(out, resume=True))
            assert out.read_bytes() == reference
            assert os.listdir(disk) == ["out.mp4"]
        finally:
            subprocess.run(["umount", str(disk)], check=True)
    assert len(failures) >= 3, failures  # the disk filled at several different points


def test_rerun_without_resume_refuses_to_delete_kept_frames(tmp_path, stand_in):
    out = tmp_path / "o.mp4"

    def stop(done, total):
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        animate.run(_job(out), stop)
    stand_in.clear()
    with pytest.raises(TalkingPoseError, match=r"holds 4 finished frames .* --resume, or start over with --overwrite"):
        animate.run(_job(out))
    assert stand_in == [] and SegmentedVideoWriter.kept_frames(tmp_path / "o.mp4.partial") == 4
    with pytest.raises(TalkingPoseError, match="give one of the two"):
        animate.run(_job(out, resume=True, overwrite=True))
    animate.run(_job(out, overwrite=True))
    assert len(stand_in) == FRAMES and len(_decoded(out)) == FRAMES


def test_a_strangers_partial_folder_is_never_deleted(tmp_path, stand_in):
    out = tmp_path / "o.mp4"
    stranger = tmp_path / "o.mp4.partial"
    stranger.mkdir()
    (stranger / "thesis.tex").write_text("years of work")
    for resume, overwrite in ((False, False), (True, False), (False, True)):
        with pytest.raises(TalkingPoseError, match="was not made by TalkingPose; it is left untouched"):
            animate.run(_job(out, resume=resume, overwrite=overwrite))
    assert (stranger / "thesis.tex").read_text() == "years of work" and stand_in == []
    with pytest.raises(TalkingPoseError, match="was not made by TalkingPose"):
        SegmentedVideoWriter.remove_folder(stranger)


def test_a_file_dropped_into_the_packs_folder_survives_the_render(tmp_path, stand_in):
    out = tmp_path / "o.mp4"

    def stop(done, total):
        if done == 2:
            (tmp_path / "o.mp4.partial" / "notes.txt").write_text("mine")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        animate.run(_job(out), stop)
    animate.run(_job(out, resume=True))
    assert (tmp_path / "o.mp4.partial" / "notes.txt").read_text() == "mine"
    assert os.listdir(tmp_path / "o.mp4.partial") == ["notes.txt"]


def _refused_before_networks(monkeypatch, job, message):
    def no_networks(*a, **k):
        raise AssertionError("the networks were built before the check")

    monkeypatch.setattr("talkingpose.pipeline.load_pipeline", no_networks)
    monkeypatch.setattr("talkingpose.random_weights.write_random_weights", no_networks)
    with pytest.raises(TalkingPoseError, match=message):
        animate.run(job)


def test_out_naming_a_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    (tmp_path / "videos").mkdir()
    _refused_before_networks(monkeypatch, _job(tmp_path / "videos"), r"is a folder; give the video's file name")
    assert os.listdir(tmp_path / "videos") == []


@pytest.mark.parametrize("where", ["proc", "parent is a file", "read-only"])
def test_unwritable_out_is_refused_before_any_work(tmp_path, monkeypatch, where):
    if where == "proc":
        out = Path("/proc/x.mp4")
    elif where == "parent is a file":
        (tmp_path / "a-file").write_text("")
        out = tmp_path / "a-file" / "x.mp4"
    else:
        if not _tmpfs(tmp_path / "ro", "64k"):
            pytest.skip("cannot mount a file system here")
        subprocess.run(["mount", "-o", "remount,ro", str(tmp_path / "ro")], check=True)
        out = tmp_path / "ro" / "x.mp4"
    try:
        _refused_before_networks(monkeypatch, _job(out), r"Cannot write the output .* Choose another place for --out")
    finally:
        if where == "read-only":
            subprocess.run(["umount", str(tmp_path / "ro")], check=True)


def test_unreadable_source_and_missing_dwpose_are_refused_before_any_network(tmp_path, monkeypatch):
    garbage = tmp_path / "me.png"
    garbage.write_bytes(b"not a picture")
    _refused_before_networks(monkeypatch, _job(tmp_path / "o.mp4", source=garbage), r"is not an image that can be read")
    # Random weights bring random DWPose models; with real weights a missing DWPose is named before any work.
    _refused_before_networks(monkeypatch, _job(tmp_path / "o.mp4", poses=None, models_root=tmp_path / "models",
                                               random_weights=None),
                             r"(?s)Missing weights:.*yolox_l\.onnx.*`python cli.py download --what dwpose`")
    assert not (tmp_path / "o.mp4.partial").exists()


def test_a_size_beyond_the_machines_memory_is_refused_with_the_figure(tmp_path, monkeypatch):
    _refused_before_networks(monkeypatch, _job(tmp_path / "o.mp4", width=16384, height=16384),
                             r"--size 16384x16384 needs about \d+\.\d GiB of memory, more than the .* GiB RAM")
    total, _, _ = memory.device_memory(torch.device("cpu"))
    assert memory.estimate_bytes(512, 512) < total  # the default size is not refused on this machine
    assert memory.estimate_bytes(512, 512, dtype_bytes=2) * 2 == memory.estimate_bytes(512, 512)


def test_finalize_after_a_failed_join_only_joins(tmp_path, monkeypatch, stand_in):
    out = tmp_path / "f.mp4"

    def full_disk(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    real_remux = SegmentedVideoWriter._remux
    monkeypatch.setattr(SegmentedVideoWriter, "_remux", full_disk)
    with pytest.raises(TalkingPoseError, match=rf"All {FRAMES} frames are kept in .*f.mp4.partial.*--resume"):
        animate.run(_job(out))
    monkeypatch.setattr(SegmentedVideoWriter, "_remux", real_remux)
    stand_in.clear()
    animate.run(_job(out, resume=True))
    assert stand_in == [] and len(_decoded(out)) == FRAMES


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="file modes are POSIX")
def test_finished_files_get_the_usual_permissions_not_the_temporary_files_private_ones(tmp_path, stand_in,
                                                                                        monkeypatch):
    """The atomic writes go through mkstemp, whose files are 0o600; the finished video and any other file must
    get what a plain `open` gives (or keep the mode of the file they replace)."""
    monkeypatch.setattr(durable, "_UMASK", 0o022)
    previous = os.umask(0o022)
    try:
        out = tmp_path / "perm.mp4"
        animate.run(_job(out, frames=2))
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        note = durable.write_bytes(tmp_path / "note.bin", b"a")
        assert stat.S_IMODE(note.stat().st_mode) == 0o644
        note.chmod(0o640)
        durable.write_bytes(note, b"b")
        assert stat.S_IMODE(note.stat().st_mode) == 0o640 and note.read_bytes() == b"b"
    finally:
        os.umask(previous)


def test_the_reliability_page_names_each_crash_point():
    section = (PACK_ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    for needle in ("--resume", "--overwrite", "byte for byte", "full disk", "kill", ".partial"):
        assert needle in section


def test_a_spliced_driving_video_is_rendered_whole_and_irregular_timing_is_reported(tmp_path, stand_in, caplog):
    from test_video_io import _timed_clip

    halves = [_timed_clip(tmp_path / f"{n}.ts", [i * 40 for i in range(10)], "mpegts") for n in "ab"]
    spliced = tmp_path / "spliced.ts"
    spliced.write_bytes(halves[0].read_bytes() + halves[1].read_bytes())  # timestamps restart half-way
    with caplog.at_level("WARNING", logger="TalkingPose"):
        animate.run(_job(tmp_path / "o.mp4", driving=spliced, frames=None))
    assert len(_decoded(tmp_path / "o.mp4")) == 20 and len(stand_in) == 20
    assert "not evenly spaced in time" in caplog.text and "constant 25.000 fps" in caplog.text


def test_an_existing_output_or_link_is_replaced_only_with_overwrite(tmp_path, stand_in):
    """Issue 22, finding 1: `animate --out` replaced an existing video (or the file a link points to) unasked."""
    earlier = tmp_path / "earlier.mp4"
    earlier.write_bytes(b"an earlier video")
    elsewhere = tmp_path / "elsewhere.mp4"
    elsewhere.write_bytes(b"the user's file")
    link = tmp_path / "link.mp4"
    link.symlink_to(elsewhere)
    for out in (earlier, link):
        for resume in (False, True):  # nothing to resume: --resume gives no permission either
            with pytest.raises(TalkingPoseError, match=f"{out} already exists; choose another --out, or add "
                                                       "--overwrite to replace it."):
                animate.run(_job(out, frames=2, resume=resume))
    assert stand_in == []  # refused before any work
    assert earlier.read_bytes() == b"an earlier video" and elsewhere.read_bytes() == b"the user's file"
    animate.run(_job(link, frames=2, overwrite=True))
    assert not link.is_symlink() and len(_decoded(link)) == 2 and elsewhere.read_bytes() == b"the user's file"


def _renames_into_place(source: str) -> list[int]:
    """Lines of `source` that rename or move a file (os.replace/rename/renames, shutil.move, Path.replace/rename,
    also imported by name). `str.replace` takes two arguments and `dataclasses.replace` is no method call, so
    neither is counted."""
    import ast

    tree = ast.parse(source)
    renamed = {(module, name) for module in ("os", "shutil") for name in ("replace", "rename", "renames", "move")}
    imported = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for alias in node.names if (node.module, alias.name) in renamed}
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in imported:
            lines.append(node.lineno)
        elif isinstance(func, ast.Attribute):
            owner = func.value.id if isinstance(func.value, ast.Name) else None
            if ((owner, func.attr) in renamed or func.attr in ("rename", "renames")
                    or (func.attr == "replace" and len(node.args) == 1 and not node.keywords)):
                lines.append(node.lineno)
    return lines


def test_no_file_is_renamed_into_place_outside_durable():
    """Issue 20, item 3: every file that must survive a crash goes through `durable` (a temporary name unique to
    the process that never follows a link, flushed, renamed); a rename elsewhere would bypass it."""
    assert _renames_into_place("import os, shutil\nfrom os import replace as r\nos.replace(a, b)\nshutil.move(a, b)\n"
                               "p.replace(q)\np.rename(q)\nr(a, b)\ns.replace('a', 'b')\nreplace(frame, body=1)\n") == [3, 4, 5, 6, 7]
    found = []
    for folder in ("talkingpose", "nodes"):
        for path in sorted((PACK_ROOT / folder).rglob("*.py")):
            if path == PACK_ROOT / "talkingpose" / "durable.py":
                continue
            found += [f"{path.relative_to(PACK_ROOT)}:{line}" for line in _renames_into_place(path.read_text(encoding="utf-8"))]
    assert found == [], "write these files through talkingpose/durable.py"


def test_a_save_that_may_not_replace_leaves_the_existing_file_and_nothing_of_its_own(tmp_path):
    target = tmp_path / "kept.json"
    target.write_text("mine")
    with pytest.raises(FileExistsError):
        durable.write_text(target, "theirs", replace=False)
    appeared = tmp_path / "appeared.json"
    with pytest.raises(FileExistsError):  # made by someone else while the content was written
        with durable.replacing(appeared, replace=False) as temporary:
            temporary.write_text("theirs")
            appeared.write_text("mine")
    assert target.read_text() == "mine" and appeared.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["appeared.json", "kept.json"]


def test_a_temporary_that_keeps_its_extension_is_cleaned_up_after_a_kill(tmp_path):
    """Files checked by a loader before they are kept (convert, the image encoder's download) keep their extension
    after `.tmp`; a killed writer's such file goes with the next save as any other temporary does."""
    out = tmp_path / "model.safetensors"
    temporary = durable.temporary_sibling(out, keep_extension=True)
    assert temporary.name.startswith(f".model.safetensors.{os.getpid()}.") and temporary.name.endswith(".tmp.safetensors")
    dead = tmp_path / ".model.safetensors.999999999.abcdefgh.tmp.safetensors"
    dead.write_bytes(b"partial")
    assert durable.remove_stale_temporaries(out) == [dead]
    assert durable.remove_stale_temporaries_in(tmp_path) == [] and temporary.exists()


def test_a_run_recorded_with_the_old_retarget_option_resumes_with_alignment(tmp_path):
    """Runs interrupted before the pose option had one name recorded `retarget: full|align`; they resume under
    today's `--alignment retarget|similarity`, and a real difference is still refused."""
    from talkingpose.errors import RunMismatch
    from talkingpose.render_output import resume_point
    from talkingpose.segmented_writer import state_file_name

    settings = {"steps": 1, "keypoints": "track.json", "smooth": 0.5}
    state = SamplerState(torch.zeros(4, 8, 8), torch.ones(4, 8, 8), 3, SamplerSettings(), 64, 64)
    state.extra = {**settings, "retarget": "full"}
    state.save(tmp_path / state_file_name(3))
    writer = SimpleNamespace(frames_written=3, frames_encoded=0, partial_dir=tmp_path, truncate=lambda n: None)
    assert resume_point(writer, {**settings, "alignment": "retarget"}).next_frame == 3
    with pytest.raises(RunMismatch, match=r"alignment: 'retarget' before, 'similarity' now"):
        resume_point(writer, {**settings, "alignment": "similarity"})


class _HeldOpen:
    """os.replace as Windows does it while another program has the target open: PermissionError, `times` times
    (forever when None), then the real rename. Time passes only through the fake clock's sleeps."""

    def __init__(self, monkeypatch, target, times):
        self.target, self.times, self.refused, self.now, self.pauses = Path(target), times, 0, 0.0, []
        self.real_replace = os.replace
        monkeypatch.setattr(durable.os, "replace", self.replace)
        monkeypatch.setattr(durable.time, "monotonic", lambda: self.now)
        monkeypatch.setattr(durable.time, "sleep", self.sleep)

    def replace(self, source, destination):
        if Path(destination) == self.target and (self.times is None or self.refused < self.times):
            self.refused += 1
            raise PermissionError(13, "The process cannot access the file because it is being used by another process")
        self.real_replace(source, destination)

    def sleep(self, seconds):
        self.pauses.append(seconds)
        self.now += seconds


def test_replacing_a_file_held_open_for_a_moment_is_retried(tmp_path, monkeypatch):
    path = durable.write_bytes(tmp_path / "clip.mp4", b"old")
    held = _HeldOpen(monkeypatch, path, times=3)  # an antivirus scan, say
    durable.write_bytes(path, b"new")
    assert held.refused == 3 and path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_replacing_a_file_held_open_for_good_keeps_both_and_names_where(tmp_path, monkeypatch):
    path = durable.write_bytes(tmp_path / "clip.mp4", b"old")
    (tmp_path / "clip.new.mp4").write_bytes(b"someone's")  # a name in the way is never replaced
    held = _HeldOpen(monkeypatch, path, times=None)  # a player showing the video
    with pytest.raises(TalkingPoseError) as raised:
        durable.write_bytes(path, b"new")
    kept = tmp_path / "clip.new2.mp4"
    assert str(raised.value) == (
        f"Could not replace {path}: another program holds it open (a video player, ComfyUI's preview or an antivirus "
        f"scan, say). The old file is unchanged and the new content is kept as {kept}; close that program, then "
        "delete the old file and rename clip.new2.mp4 to clip.mp4 (or run again).")
    assert path.read_bytes() == b"old" and kept.read_bytes() == b"new"
    assert (tmp_path / "clip.new.mp4").read_bytes() == b"someone's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "clip.new.mp4", "clip.new2.mp4"]
    assert held.refused > 3 and durable.REPLACE_RETRY_SECONDS - 1 < held.now <= durable.REPLACE_RETRY_SECONDS


def test_the_memory_check_reads_the_systems_memory_without_proc(monkeypatch, caplog):
    """/proc/meminfo exists only on Linux: without it (Windows, macOS) the check must still refuse and warn."""
    import psutil

    real_open = open

    def no_proc(file, *args, **kwargs):
        if str(file).startswith("/proc"):
            raise FileNotFoundError(2, "No such file or directory", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_proc)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(total=12 * 2**30, available=2**30))
    with pytest.raises(TalkingPoseError, match=r"more than the 12\.0 GiB RAM of this machine\. Use a smaller size "
                                               r"\(up to about 824x824 fits\)"):
        memory.check_fits(1024, 1024, torch.device("cpu"), torch.float32)
    with caplog.at_level("WARNING", logger="TalkingPose"):
        memory.check_fits(256, 256, torch.device("cpu"), torch.float32)
    assert "only 1.0 GiB of RAM is free now" in caplog.text
    # less memory than the weights alone: a sentence, not a crash on the square root of a negative number
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(total=2**30, available=2**29))
    with pytest.raises(TalkingPoseError, match=r"more than the 1\.0 GiB RAM .* No size fits: the weights alone need "
                                               r"about 7\.9 GiB"):
        memory.check_fits(512, 512, torch.device("cpu"), torch.float32)

"""The headless command: the README's first command, resume after an interruption, missing weights, metrics."""
import re
import shlex
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest

from talkingpose import animate
from talkingpose.errors import TalkingPoseError
from talkingpose.sampler import SamplerSettings

from helpers import PACK_ROOT, SHARED

DRIVING = SHARED / "samples" / "driving" / "vid1.mp4"
POSES = SHARED / "samples" / "dwpose" / "vid1.mp4"


def _readme_first_command() -> str:
    text = (PACK_ROOT / "README.md").read_text()
    return next(line.strip() for line in text.splitlines() if line.strip().startswith("python cli.py animate"))


def _probe(path):
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        return frames, video.average_rate, [s.type for s in container.streams]


def _with_audio(src, dst, frames=30):
    """A copy of the first frames of `src` with a 440 Hz AAC track, as a driving video with sound."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream("libx264", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = vin.width, vin.height, "yuv420p"
        aout = out.add_stream("aac", rate=44100)
        aout.layout = "mono"
        for i, frame in enumerate(inp.decode(video=0)):
            if i == frames:
                break
            out.mux(vout.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")))
        out.mux(vout.encode(None))
        seconds = frames / float(vin.average_rate)
        t = np.arange(int(44100 * seconds)) / 44100
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        for start in range(0, tone.shape[1], 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start:start + 1024]), format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 44100, start
            out.mux(aout.encode(chunk))
        out.mux(aout.encode(None))
    return dst


def test_readme_first_command_runs_offline_on_the_shared_sample(tmp_path):
    if not DRIVING.is_file():
        pytest.skip(f"shared sample {DRIVING} not found")
    command = _readme_first_command()
    readme_out = PACK_ROOT / re.search(r"--out (\S+)", command).group(1)
    before = readme_out.stat() if readme_out.exists() else None
    out = tmp_path / "smoke.mp4"  # the README's command as written, but the video goes to a temporary folder
    args = [str(out) if arg == str(readme_out.relative_to(PACK_ROOT)) else arg for arg in shlex.split(command)[1:]]
    subprocess.run([sys.executable, *args], cwd=PACK_ROOT, check=True,
                   env={**__import__("os").environ, "TALKINGPOSE_MODELS": str(tmp_path / "no-models")})
    frames_wanted = int(re.search(r"--frames (\d+)", command).group(1))
    frames, fps, streams = _probe(out)
    assert frames == frames_wanted
    assert fps == Fraction(23)
    # the checkout's own out/smoke.mp4 (the README's main command's result) is not touched by the tests
    after = readme_out.stat() if readme_out.exists() else None
    assert (before and (before.st_mtime_ns, before.st_size)) == (after and (after.st_mtime_ns, after.st_size))


def test_driving_fps_and_audio_are_kept(tmp_path):
    if not DRIVING.is_file():
        pytest.skip(f"shared sample {DRIVING} not found")
    driving = _with_audio(DRIVING, tmp_path / "talk.mp4", frames=12)
    out = tmp_path / "out.mp4"
    code = subprocess.run([sys.executable, "cli.py", "animate", "--driving", str(driving), "--poses", str(POSES),
                           "--random-weights", "--size", "64x64", "--steps", "2", "--out", str(out)],
                          cwd=PACK_ROOT).returncode
    assert code == 0
    frames, fps, streams = _probe(out)
    assert frames == 12 and fps == Fraction(23)
    assert streams == ["video", "audio"]


def test_interrupted_run_resumed_makes_the_same_frames(tmp_path, monkeypatch):
    if not DRIVING.is_file():
        pytest.skip(f"shared sample {DRIVING} not found")
    made = []
    real_to_uint8 = animate._to_uint8
    monkeypatch.setattr(animate, "_to_uint8", lambda image: made.append(real_to_uint8(image)) or made[-1])

    def job(out, resume=False):
        return animate.AnimateJob(out=out, driving=DRIVING, poses=POSES, width=64, height=64, frames=20, resume=resume,
                                  settings=SamplerSettings(steps=2, seed=3), random_weights="tiny")

    animate.run(job(tmp_path / "whole.mp4"))
    whole, made[:] = list(made), []

    def stop_at_frame_19(done, total):
        if done == 19:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        animate.run(job(tmp_path / "cut.mp4"), stop_at_frame_19)
    assert list((tmp_path / "cut.mp4.partial").glob("state-0000019.safetensors"))
    first = list(made)
    made[:] = []
    animate.run(job(tmp_path / "cut.mp4", resume=True))
    assert len(first) == 19 and len(made) == 1
    for a, b in zip(whole, first + made):
        np.testing.assert_array_equal(a, b)
    assert _probe(tmp_path / "cut.mp4")[0] == 20
    # segment boundaries do not depend on where the run stopped: the file is the same, byte for byte
    assert (tmp_path / "cut.mp4").read_bytes() == (tmp_path / "whole.mp4").read_bytes()


def test_overlapped_render_equals_the_serial_one_bit_for_bit(tmp_path, monkeypatch):
    """Pose extraction (DWPose on the driving video) ahead and decode/write/encode behind the denoising give the
    serial loop's frames and file, byte for byte."""
    if not DRIVING.is_file():
        pytest.skip(f"shared sample {DRIVING} not found")
    made = {}
    real_to_uint8 = animate._to_uint8
    monkeypatch.setattr(animate, "_to_uint8", lambda image: made.setdefault(current, []).append(real_to_uint8(image)) or made[current][-1])
    outputs = {}
    for current in ("serial", "overlapped"):
        out = tmp_path / f"{current}.mp4"
        job = animate.AnimateJob(out=out, driving=DRIVING, width=64, height=64, frames=5, segment_frames=2,
                                 settings=SamplerSettings(steps=2, seed=3), random_weights="tiny")
        animate.run(job, overlap=current == "overlapped")
        outputs[current] = out.read_bytes()
    assert len(made["serial"]) == len(made["overlapped"]) == 5
    for a, b in zip(made["serial"], made["overlapped"]):
        np.testing.assert_array_equal(a, b)
    assert outputs["serial"] == outputs["overlapped"]


def test_resume_with_other_settings_is_refused(tmp_path):
    if not DRIVING.is_file():
        pytest.skip(f"shared sample {DRIVING} not found")

    def stop(done, total):
        if done == 17:
            raise KeyboardInterrupt

    base = dict(out=tmp_path / "o.mp4", driving=DRIVING, poses=POSES, width=64, height=64, frames=20, random_weights="tiny")
    with pytest.raises(KeyboardInterrupt):
        animate.run(animate.AnimateJob(**base, settings=SamplerSettings(steps=2, beta=0.05)), stop)
    with pytest.raises(TalkingPoseError, match="beta: 0.05 before, 0.1 now"):
        animate.run(animate.AnimateJob(**base, settings=SamplerSettings(steps=2, beta=0.1), resume=True))


def test_missing_weights_are_listed_with_where_they_go(tmp_path):
    result = subprocess.run([sys.executable, "cli.py", "animate", "--driving", str(DRIVING), "--out", str(tmp_path / "x.mp4"),
                             "--models", str(tmp_path / "models")], cwd=PACK_ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    for needle in ("denoising_unet.pth", "arjavanmardi/TalkingPose", "sd-vae-ft-mse", "sd-image-variations", str(tmp_path / "models"),
                   "--random-weights", "yolox_l.onnx", "python cli.py download --what dwpose"):
        assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_size_and_missing_input_get_clear_messages(tmp_path):
    bad = subprocess.run([sys.executable, "cli.py", "animate", "--driving", str(tmp_path / "nope.mp4"), "--out", "x.mp4"],
                         cwd=PACK_ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "nope.mp4 does not exist" in bad.stderr
    odd = subprocess.run([sys.executable, "cli.py", "animate", "--driving", str(DRIVING), "--size", "100x64", "--out", "x.mp4"],
                         cwd=PACK_ROOT, capture_output=True, text=True)
    assert odd.returncode == 2 and "not a multiple of 8" in odd.stderr


def test_metrics_command_writes_json(tmp_path):
    if not DRIVING.is_file():
        pytest.skip(f"shared sample {DRIVING} not found")
    import json

    out = tmp_path / "m.json"
    subprocess.run([sys.executable, "cli.py", "metrics", "--real", str(DRIVING), "--generated", str(POSES), "--delta", "2",
                    "--metrics", "tje", "psnr_8bit", "--json", str(out)], cwd=PACK_ROOT, check=True, capture_output=True)
    result = json.loads(out.read_text())
    assert result["n_frames"] == 674 and result["tje"] > 0 and result["delta"] == 2


def test_running_without_the_requirements_names_torch_in_one_sentence(tmp_path):
    """Python without the virtual environment's packages (-S: no site-packages at all)."""
    result = subprocess.run([sys.executable, "-S", "cli.py", "animate", "--driving", str(DRIVING), "--out",
                             str(tmp_path / "x.mp4")], cwd=PACK_ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert "No module named 'torch'" in result.stderr and ". .venv/bin/activate" in result.stderr
    assert "Traceback" not in result.stderr and "AttributeError" not in result.stderr


def test_cli_offers_overwrite_and_refuses_it_with_resume(tmp_path):
    result = subprocess.run([sys.executable, "cli.py", "animate", "--driving", str(DRIVING), "--out", str(tmp_path / "x.mp4"),
                             "--resume", "--overwrite"], cwd=PACK_ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "give one of the two" in result.stderr and "Traceback" not in result.stderr



_STOPPABLE = """
import os, signal, sys
signal.SIGBREAK = signal.SIGUSR1  # Windows' Ctrl-Break signal, played by one that Linux has
from talkingpose.cli import main, progress

report = progress.Progress.__call__

def press_ctrl_break_after_two_frames(self, done, total):
    report(self, done, total)
    if done == 2:
        os.kill(os.getpid(), signal.SIGBREAK)

progress.Progress.__call__ = press_ctrl_break_after_two_frames
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_break_stops_animate_like_ctrl_c_and_resume_finishes(tmp_path):
    """On Windows Ctrl-Break (SIGBREAK) ends a process at once unless handled; animate treats it as Ctrl-C: it
    stops with the --resume sentence and exit code 130, and --resume makes the rest."""
    if not DRIVING.is_file():
        pytest.skip(f"shared sample {DRIVING} not found")
    out = tmp_path / "cut.mp4"
    argv = ["animate", "--driving", str(DRIVING), "--poses", str(POSES), "--random-weights", "--size", "64x64",
            "--steps", "1", "--frames", "4", "--device", "cpu", "--out", str(out)]
    stopped = subprocess.run([sys.executable, "-c", _STOPPABLE, *argv], cwd=PACK_ROOT, capture_output=True,
                             text=True)
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    assert "Stopped. Finished frames are kept; continue with the same command plus --resume." in stopped.stderr
    assert "Traceback" not in stopped.stderr and not out.exists()
    resumed = subprocess.run([sys.executable, "cli.py", *argv, "--resume"], cwd=PACK_ROOT, capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    reports = [line for line in resumed.stderr.splitlines() if line.startswith("animate ")]
    # The break is pressed in the commit thread after frame 2 while frame 3 denoises beside it (talkingpose/overlap.py);
    # the main thread sees it once its current kernel returns, so frame 3 may already be finished and kept too.
    assert reports[0].startswith(("animate 2/4 frames", "animate 3/4 frames")), reports  # continued after the kept ones
    assert _probe(out)[0] == 4

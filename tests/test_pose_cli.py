"""`cli.py pose extract|retarget|smooth|draw` as docs/poses.md writes them, and `animate --keypoints/--alignment/--smooth`
with random weights. DWPose runs on the synthetic golden models (their output does not depend on the pixels)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import av
import numpy as np
import pytest
from PIL import Image

from helpers import PACK_ROOT, SHARED
from pose_tracks import SOURCE_LENGTHS, driving_track, person, pixels
from talkingpose import animate
from talkingpose.cli import main
from talkingpose.pose import (
    from_pose_keypoints,
    load_pose_keypoints,
    process_track,
    render_pose,
    save_pose_keypoints,
    to_pose_keypoints,
)
from talkingpose.pose.draw import LIMBS
from talkingpose.pose.smoothing import DEFAULT_STRENGTH
from talkingpose.sampler import SamplerSettings

DRIVING = SHARED / "samples" / "driving" / "vid1.mp4"
DWPOSE_MODELS = SHARED / "golden" / "dwpose-a" / "models" / "det"
SOURCE_IMAGE = SHARED / "golden" / "dwpose-a" / "det_512x512_input.png"


@pytest.fixture()
def models(tmp_path):
    """A models root whose dwpose/ holds the synthetic golden DWPose models."""
    if not (DWPOSE_MODELS.is_dir() and DRIVING.is_file()):
        pytest.skip("shared samples / golden DWPose models not available")
    dwpose = tmp_path / "models" / "dwpose"
    dwpose.mkdir(parents=True)
    for name in ("yolox_l.onnx", "dw-ll_ucoco_384.onnx"):
        shutil.copy(DWPOSE_MODELS / name, dwpose / name)
    return tmp_path / "models"


@pytest.fixture()
def tracks(tmp_path):
    """A driving track (the waving synthetic driver) and a one-frame source pose of other proportions, as files."""
    driving = save_pose_keypoints(tmp_path / "driving.json", to_pose_keypoints(driving_track(24)))
    source = save_pose_keypoints(tmp_path / "source.json", to_pose_keypoints(
        [person(SOURCE_LENGTHS, neck=(300.0, 180.0), hand_size=15.0, face_size=45.0)]))
    return driving, source


def _cli(*args):
    return subprocess.run([sys.executable, "cli.py", *map(str, args)], cwd=PACK_ROOT, capture_output=True, text=True)


def test_the_four_pose_commands_as_written(tmp_path, models, tracks):
    driving, source = tracks
    env_models = ["--models", models]
    steps = [
        ("pose", "extract", "--video", DRIVING, "--out", tmp_path / "track.json", "--frames", 6, *env_models),
        ("pose", "retarget", "--source", source, "--driving", driving, "--out", tmp_path / "retargeted.json", "--smooth"),
        ("pose", "smooth", "--driving", driving, "--out", tmp_path / "smoothed.json", "--strength", 0.3),
        ("pose", "draw", "--keypoints", tmp_path / "retargeted.json", "--out", tmp_path / "poses.mp4", "--size", "256x320",
         "--fps", 12),
    ]
    for args in steps:
        result = _cli(*args)
        assert result.returncode == 0, result.stderr[-2000:]
    assert len(load_pose_keypoints(tmp_path / "track.json")) == 6
    expected, _ = process_track(from_pose_keypoints(load_pose_keypoints(driving)),
                                source=from_pose_keypoints(load_pose_keypoints(source))[0], mode="retarget",
                                strength=DEFAULT_STRENGTH)
    assert load_pose_keypoints(tmp_path / "retargeted.json") == json.loads(json.dumps(to_pose_keypoints(expected)))
    smoothed, _ = process_track(from_pose_keypoints(load_pose_keypoints(driving)), strength=0.3)
    assert load_pose_keypoints(tmp_path / "smoothed.json") == json.loads(json.dumps(to_pose_keypoints(smoothed)))
    with av.open(str(tmp_path / "poses.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height, stream.average_rate) == (256, 320, 12)
        assert sum(1 for _ in container.decode(video=0)) == 24


def test_pose_extract_writes_what_the_extractor_finds(tmp_path, models):
    from talkingpose.pose import PoseExtractor
    from talkingpose.pose.track import extract_video_track

    assert main(["pose", "extract", "--video", str(DRIVING), "--out", str(tmp_path / "t.json"), "--frames", "3",
                 "--models", str(models)]) == 0
    direct = extract_video_track(DRIVING, PoseExtractor.from_folders([models / "dwpose"]), max_frames=3)
    assert load_pose_keypoints(tmp_path / "t.json") == json.loads(json.dumps(to_pose_keypoints(direct)))


def test_pose_retarget_gives_source_lengths_and_driver_directions(tmp_path, tracks):
    driving, source = tracks
    assert main(["pose", "retarget", "--source", str(source), "--driving", str(driving), "--out", str(tmp_path / "o.json")]) == 0
    out = from_pose_keypoints(load_pose_keypoints(tmp_path / "o.json"))
    drv = from_pose_keypoints(load_pose_keypoints(driving))
    worst_length = worst_angle = 0.0
    for frame, d in zip(out, drv):
        o, p = pixels(frame, frame.body), pixels(d, d.body)
        for a, b in LIMBS:
            vo, vd = o[b] - o[a], p[b] - p[a]
            worst_length = max(worst_length, abs(np.linalg.norm(vo) / SOURCE_LENGTHS[(a, b)] - 1))
            worst_angle = max(worst_angle, abs(np.degrees(np.arctan2(vo[0] * vd[1] - vo[1] * vd[0], vo @ vd))))
    # Through JSON (coordinates as written) the figures stay far inside the limits: measured 1e-15 and 1e-13°.
    assert worst_length <= 0.01 and worst_angle <= 0.5
    np.testing.assert_allclose(pixels(out[0], out[0].body)[1], (300.0, 180.0), atol=1e-9)


def test_old_alignment_spellings_give_the_same_tracks(tmp_path, tracks):
    """Command lines written before the option had one name (`pose retarget --mode full|align`) still run and
    write the very same tracks as today's `--alignment retarget|similarity`."""
    driving, source = tracks
    for old, new in ((["--mode", "full"], ["--alignment", "retarget"]), (["--mode", "align"], ["--alignment", "similarity"])):
        for args, name in ((old, "old.json"), (new, "new.json")):
            assert main(["pose", "retarget", "--source", str(source), "--driving", str(driving), "--smooth", "0.3",
                         "--out", str(tmp_path / name), *args]) == 0
        assert (tmp_path / "old.json").read_bytes() == (tmp_path / "new.json").read_bytes()
    drv = from_pose_keypoints(load_pose_keypoints(driving))
    expected, _ = process_track(drv, source=from_pose_keypoints(load_pose_keypoints(source))[0], mode="similarity",
                                strength=0.3, space=(drv[0].canvas_hw[1], drv[0].canvas_hw[0]))
    assert load_pose_keypoints(tmp_path / "new.json") == json.loads(json.dumps(to_pose_keypoints(expected)))


def test_animate_reads_the_old_retarget_option_as_alignment():
    from talkingpose.cli import build_parser

    def alignment(*args):
        return build_parser().parse_args(["animate", "--out", "o.mp4", *args]).alignment

    assert alignment() == "off"
    for old, new in (("off", "off"), ("align", "similarity"), ("full", "retarget")):
        assert alignment("--retarget", old) == alignment("--alignment", new) == new
    assert alignment("--alignment", "full") == "retarget"  # an old value under the new name too
    help_text = " ".join(_cli("animate", "--help").stdout.split())
    assert "--alignment {off,similarity,retarget}" in help_text and "--retarget" not in help_text
    assert not re.search(r"--mode\b", _cli("pose", "retarget", "--help").stdout)
    result = _cli("animate", "--out", "o.mp4", "--alignment", "bones")
    assert result.returncode == 2 and "invalid choice: 'bones' (choose from" in result.stderr


def test_pose_retarget_with_a_source_image_runs_dwpose_on_it(tmp_path, models, tracks):
    driving, _ = tracks
    assert main(["pose", "retarget", "--source", str(SOURCE_IMAGE), "--driving", str(driving),
                 "--out", str(tmp_path / "o.json"), "--models", str(models), "--smooth", "0.2"]) == 0
    out = load_pose_keypoints(tmp_path / "o.json")
    assert len(out) == 24 and (out[0]["canvas_width"], out[0]["canvas_height"]) == (512, 512)


def test_pose_smooth_strength_zero_writes_the_input_unchanged(tmp_path, tracks):
    driving, _ = tracks
    assert main(["pose", "smooth", "--driving", str(driving), "--out", str(tmp_path / "o.json"), "--strength", "0"]) == 0
    assert load_pose_keypoints(tmp_path / "o.json") == load_pose_keypoints(driving)


def test_pose_draw_renders_exactly_as_pose_extract(tmp_path, tracks):
    from nodes.pose_nodes import _render_batch

    driving, _ = tracks
    assert main(["pose", "draw", "--keypoints", str(driving), "--out", str(tmp_path / "frames"), "--size", "200x120"]) == 0
    poses = from_pose_keypoints(load_pose_keypoints(driving))
    node = _render_batch(poses, poses[0].canvas_hw, 200, 120, dict(body=True, hands=True, face=True))
    for i in (0, 11, 23):
        png = np.asarray(Image.open(tmp_path / "frames" / f"frame_{i:05d}.png"))
        np.testing.assert_array_equal(png, render_pose(poses[i], 200, 120))
        np.testing.assert_array_equal(png, np.rint(node[i].numpy() * 255).astype(np.uint8))
    assert len(list((tmp_path / "frames").glob("*.png"))) == 24


def test_pose_command_mistakes_get_sentences(tmp_path, tracks):
    driving, source = tracks
    (tmp_path / "folder").mkdir()
    two_frames = save_pose_keypoints(tmp_path / "two.json", to_pose_keypoints(driving_track(2)))
    cases = [
        (("pose", "smooth", "--driving", driving, "--out", tmp_path / "folder"), "is a folder"),
        (("pose", "smooth", "--driving", driving, "--out", tmp_path / "o.json", "--strength", "2"), "strength must be"),
        (("pose", "retarget", "--source", two_frames, "--driving", driving, "--out", tmp_path / "o.json"), "holds 2 frames"),
        (("pose", "retarget", "--source", tmp_path / "src.gif", "--driving", driving, "--out", tmp_path / "o.json"),
         "neither an image"),
        (("pose", "draw", "--keypoints", driving, "--out", tmp_path / "x.avi"), "give an .mp4 file"),
        (("pose", "draw", "--keypoints", tmp_path / "missing.json", "--out", tmp_path / "x.mp4"), "not found"),
    ]
    for args, message in cases:
        result = _cli(*args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    help_text = " ".join(_cli("pose", "retarget", "--help").stdout.split())
    assert f"default strength, {DEFAULT_STRENGTH}" in help_text  # the help names the engine's default


def test_animate_with_keypoints_retarget_and_smoothing_renders_on_random_weights(tmp_path, models, tracks):
    driving, _ = tracks
    source_png = tmp_path / "source.png"
    shutil.copy(SOURCE_IMAGE, source_png)
    out = tmp_path / "out.mp4"
    assert main(["animate", "--keypoints", str(driving), "--source", str(source_png), "--alignment", "retarget", "--smooth",
                 "--random-weights", "--size", "64x64", "--steps", "1", "--frames", "5", "--fps", "10",
                 "--models", str(models), "--out", str(out)]) == 0
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 5
        assert container.streams.video[0].average_rate == 10


def test_animate_draws_the_retargeted_smoothed_track(tmp_path, models, tracks):
    driving, _ = tracks
    job = animate.AnimateJob(out=tmp_path / "o.mp4", keypoints=driving, source=SOURCE_IMAGE, alignment="retarget",
                             smooth=0.5, width=64, height=64, settings=SamplerSettings(steps=1), random_weights="tiny")
    track = animate._keypoint_track(job, models)
    from talkingpose.pose import PoseExtractor
    from talkingpose.pose.track import load_source_pose

    source = load_source_pose(SOURCE_IMAGE, lambda: PoseExtractor.from_folders([models / "dwpose"]))
    expected, _ = process_track(from_pose_keypoints(load_pose_keypoints(driving)), source=source, mode="retarget", strength=0.5)
    renders = list(animate._pose_renders(job, 7, models, track))
    assert len(renders) == 24 - 7
    np.testing.assert_array_equal(renders[0], render_pose(expected[7], 512, 512))
    aligned = animate._keypoint_track(animate.AnimateJob(out=tmp_path / "a.mp4", keypoints=driving, source=SOURCE_IMAGE,
                                                         alignment="similarity", width=64, height=64), models)
    assert not np.allclose(aligned[3].body, track[3].body)


def test_animate_refuses_keypoint_options_with_a_render_video(tmp_path):
    result = _cli("animate", "--poses", DRIVING, "--source", SOURCE_IMAGE, "--smooth", "--random-weights",
                  "--out", tmp_path / "x.mp4")
    assert result.returncode == 2 and "cannot be retargeted or smoothed" in result.stderr

"""Video metrics: TJE against an independent whole-array implementation of the official definition (on frames
decoded by OpenCV, the decoder the official script uses), PSNR/SSIM against known values and the direct formula,
streaming memory, directory mode and bad input."""
import math
import tracemalloc

import av
import cv2
import numpy as np
import pytest

from talkingpose import metrics
from talkingpose.errors import TalkingPoseError
from talkingpose.video_io import VideoReader


def _synth_frames(n, width, height, seed):
    """Smoothly moving content plus noise, so that frame differences at any delta are non-trivial."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for t in range(n):
        base = np.stack(
            [
                128 + 100 * np.sin(xx / 7.0 + t * 0.4),
                128 + 100 * np.cos(yy / 5.0 - t * 0.3),
                128 + 90 * np.sin((xx + yy) / 9.0 + t * 0.25 * (1 + seed % 3)),
            ],
            axis=2,
        )
        frames.append(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))
    return frames


def _write_mp4(path, frames, fps=25):
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "10"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i, frame in enumerate(frames):
            av_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            av_frame.pts = i
            container.mux(stream.encode(av_frame))
        container.mux(stream.encode(None))
    return path


def _decode_cv2(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return np.stack(frames)


def _reference_tje(real_path, gen_path, delta):
    """The definition, whole-array: pair until the shorter ends, area-resize generated frames to the real size,
    per-term mean over channels of per-channel means of ||R_t - R_{t-delta}| - |G_t - G_{t-delta}||, mean over terms."""
    real, gen = _decode_cv2(real_path), _decode_cv2(gen_path)
    n = min(len(real), len(gen))
    real, gen = real[:n], gen[:n]
    height, width = real.shape[1:3]
    if gen.shape[1:3] != (height, width):
        gen = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in gen])
    real, gen = real.astype(np.int16), gen.astype(np.int16)
    d_real = np.abs(real[delta:] - real[:-delta])
    d_gen = np.abs(gen[delta:] - gen[:-delta])
    terms = np.abs(d_real - d_gen).mean(axis=(1, 2)).mean(axis=1)
    return terms.mean(), len(terms), terms.sum()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("metric_videos")
    return {
        "real": _write_mp4(root / "real.mp4", _synth_frames(30, 64, 48, seed=1)),
        "gen": _write_mp4(root / "gen.mp4", _synth_frames(30, 64, 48, seed=2)),
        "gen_small_short": _write_mp4(root / "gen_small.mp4", _synth_frames(22, 40, 30, seed=3)),
        "gen_large_long": _write_mp4(root / "gen_large.mp4", _synth_frames(36, 96, 72, seed=4)),
    }


@pytest.mark.parametrize("delta", [1, 2, 5])
def test_tje_matches_definition_same_size(videos, delta):
    expected, n_terms, _ = _reference_tje(videos["real"], videos["gen"], delta)
    got = metrics.compare_videos(videos["real"], videos["gen"], delta=delta, metrics=("tje",))
    assert got.tje_terms == n_terms == 30 - delta
    assert got.n_frames == 30
    assert expected > 1.0  # the synthetic videos really do jitter differently
    assert got.tje == pytest.approx(expected, rel=0, abs=1e-9)


@pytest.mark.parametrize("gen_key, n_frames", [("gen_small_short", 22), ("gen_large_long", 30)])
def test_tje_different_lengths_and_sizes(videos, gen_key, n_frames):
    expected, n_terms, _ = _reference_tje(videos["real"], videos[gen_key], 2)
    got = metrics.compare_videos(videos["real"], videos[gen_key])  # delta defaults to 2
    assert got.delta == 2
    assert got.n_frames == n_frames and got.tje_terms == n_terms == n_frames - 2
    assert got.tje == pytest.approx(expected, rel=0, abs=1e-9)


def test_tje_real_video_shorter_than_generated(videos):
    expected, n_terms, _ = _reference_tje(videos["gen_small_short"], videos["real"], 3)
    got = metrics.compare_videos(videos["gen_small_short"], videos["real"], delta=3, metrics=("tje",))
    # here the real video is the smaller one, so the 64×48 generated frames are area-shrunk to 40×30
    assert got.tje_terms == n_terms == 19
    assert got.tje == pytest.approx(expected, rel=0, abs=1e-9)


def test_tje_on_shared_samples_matches_definition(shared_dir, tmp_path):
    """Real footage (mpeg4 talk clip against its h264 DWPose render), first 40 frames."""
    src_real, src_gen = shared_dir / "samples/driving/vid1.mp4", shared_dir / "samples/dwpose/vid1.mp4"
    with VideoReader(src_real, max_frames=40) as r, VideoReader(src_gen, max_frames=40) as g:
        got = metrics.compare_frames(r, g, delta=2, metrics=("tje", "psnr_8bit"))
    real_frames, gen_frames = [], []
    for path, out in ((src_real, real_frames), (src_gen, gen_frames)):
        capture = cv2.VideoCapture(str(path))
        for _ in range(40):
            out.append(capture.read()[1])
        capture.release()
    real_arr = np.stack(real_frames).astype(np.int16)
    gen_arr = np.stack(gen_frames).astype(np.int16)
    terms = np.abs(np.abs(real_arr[2:] - real_arr[:-2]) - np.abs(gen_arr[2:] - gen_arr[:-2])).mean(axis=(1, 2, 3))
    assert got.tje_terms == 38
    assert got.tje == pytest.approx(terms.mean(), rel=0, abs=1e-9)


def test_tje_needs_delta_plus_one_frames():
    frames = _synth_frames(3, 16, 16, seed=5)
    short = metrics.compare_frames(frames[:2], frames[:2], delta=2)
    assert short.tje is None and short.tje_terms == 0 and short.n_frames == 2
    assert short.psnr_8bit == math.inf  # the other metrics still cover the frames there are
    just_enough = metrics.compare_frames(frames, frames[::-1], delta=2)
    assert just_enough.tje_terms == 1 and just_enough.tje is not None


def test_grey_and_alpha_frames_count_as_rgb():
    rgb_a = _synth_frames(6, 24, 20, seed=6)
    rgb_b = _synth_frames(6, 24, 20, seed=7)
    grey_a = [f[:, :, 1] for f in rgb_a]
    grey_b = [f[:, :, 1] for f in rgb_b]
    grey = metrics.compare_frames(grey_a, grey_b, delta=1)
    replicated = metrics.compare_frames([np.dstack([g] * 3) for g in grey_a], [np.dstack([g] * 3) for g in grey_b], 1)
    assert grey.tje == pytest.approx(replicated.tje, abs=1e-12) and grey.ssim == pytest.approx(replicated.ssim)
    alpha = [np.dstack([f, np.full(f.shape[:2], 7, np.uint8)]) for f in rgb_a]
    assert metrics.compare_frames(alpha, rgb_b, 1).tje == metrics.compare_frames(rgb_a, rgb_b, 1).tje


def test_streaming_holds_only_a_few_frames():
    width, height, n = 128, 96, 400  # 37 KB a frame: keeping the videos would take about 30 MB

    def frames(seed):
        rng = np.random.default_rng(seed)
        for _ in range(n):
            yield rng.integers(0, 256, (height, width, 3), dtype=np.uint8)

    tracemalloc.start()
    try:
        result = metrics.compare_frames(frames(1), frames(2), delta=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.n_frames == n and result.tje_terms == n - 2
    assert peak < 6_000_000


# --- PSNR ------------------------------------------------------------------------------------------------


def test_psnr_identical_frames_is_inf():
    frame = _synth_frames(1, 16, 12, seed=8)[0]
    assert metrics.psnr_8bit(frame, frame.copy()) == math.inf
    assert metrics.psnr_float(frame / 255.0, frame / 255.0) == math.inf
    result = metrics.compare_frames([frame] * 3, [frame.copy()] * 3)
    assert result.psnr_8bit == math.inf and result.psnr_float == math.inf and result.ssim == 1.0
    assert result.tje == 0.0


def test_psnr_known_values_and_per_frame_mean():
    zero = np.zeros((8, 10, 3), np.uint8)
    one = np.ones((8, 10, 3), np.uint8)  # MSE 1
    ten = np.full((8, 10, 3), 10, np.uint8)  # MSE 100
    assert metrics.psnr_8bit(zero, one) == pytest.approx(20 * math.log10(255), abs=1e-12)  # 48.1308 dB
    assert metrics.psnr_8bit(zero, ten) == pytest.approx(20 * math.log10(255) - 20, abs=1e-12)
    # uint8 frames in the float variant are divided by 255, so both variants agree on them
    assert metrics.psnr_float(zero, one) == pytest.approx(20 * math.log10(255), abs=1e-9)
    result = metrics.compare_frames([zero, zero], [one, ten], metrics=("psnr_8bit", "psnr_float"))
    # the mean of per-frame PSNRs (38.13 dB), not the PSNR of the mean MSE (50.5 -> 31.1 dB)
    assert result.psnr_8bit == pytest.approx(20 * math.log10(255) - 10, abs=1e-12)
    assert result.psnr_float == pytest.approx(result.psnr_8bit, abs=1e-9)
    assert result.tje is None and result.ssim is None


def test_psnr_float_frames_and_their_8bit_quantisation():
    real = np.full((12, 12, 3), 0.5)
    gen = np.full((12, 12, 3), 0.6)
    assert metrics.psnr_float(real, gen) == pytest.approx(20.0, abs=1e-9)  # MSE 0.01 in [0, 1]
    # 8-bit variant truncates like the official video saving: 0.5 -> 127, 0.6 -> 153
    assert metrics.psnr_8bit(real, gen) == pytest.approx(20 * math.log10(255 / 26), abs=1e-12)
    result = metrics.compare_frames([real], [gen], metrics=("psnr_float", "psnr_8bit"))
    assert result.psnr_float == pytest.approx(20.0, abs=1e-9)
    assert result.psnr_8bit == pytest.approx(20 * math.log10(255 / 26), abs=1e-12)


def test_generated_frames_are_area_resized_for_every_metric():
    real = _synth_frames(4, 32, 24, seed=9)
    gen = _synth_frames(4, 64, 48, seed=10)
    shrunk = [cv2.resize(f, (32, 24), interpolation=cv2.INTER_AREA) for f in gen]
    a = metrics.compare_frames(real, gen, delta=1)
    b = metrics.compare_frames(real, shrunk, delta=1)
    for name in ("tje", "psnr_float", "psnr_8bit", "ssim"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), abs=1e-12), name
    # float frames are resized as floats for the float PSNR (no detour through 8 bits)
    real_f = [f / 255.0 for f in real]
    gen_f = [f / 255.0 + 0.001 for f in gen]
    shrunk_f = [cv2.resize(f, (32, 24), interpolation=cv2.INTER_AREA) for f in gen_f]
    expected = np.mean([metrics.psnr_float(r, s) for r, s in zip(real_f, shrunk_f)])
    assert metrics.compare_frames(real_f, gen_f, metrics=("psnr_float",)).psnr_float == pytest.approx(expected, abs=1e-9)


# --- SSIM ------------------------------------------------------------------------------------------------


def _ssim_direct(x, y):
    """SSIM straight from Wang et al. 2004: at every pixel whose 11×11 window fits, Gaussian-weighted
    (sigma = 1.5) means, population variances and covariance; per channel mean, then mean over channels."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    k = np.arange(-5, 6)
    g = np.exp(-(k[:, None] ** 2 + k[None, :] ** 2) / (2 * 1.5**2))
    w = g / g.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    per_channel = []
    for c in range(x.shape[2]):
        values = []
        for i in range(5, x.shape[0] - 5):
            for j in range(5, x.shape[1] - 5):
                px, py = x[i - 5 : i + 6, j - 5 : j + 6, c], y[i - 5 : i + 6, j - 5 : j + 6, c]
                mx, my = (w * px).sum(), (w * py).sum()
                vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
                cxy = (w * (px - mx) * (py - my)).sum()
                values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
        per_channel.append(np.mean(values))
    return float(np.mean(per_channel))


@pytest.mark.parametrize("shape", [(11, 11, 3), (17, 23, 3)])
def test_ssim_matches_direct_formula(shape):
    rng = np.random.default_rng(shape[1])
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    y = np.clip(x.astype(int) + rng.integers(-60, 60, shape), 0, 255).astype(np.uint8)
    expected = _ssim_direct(x, y)
    assert 0.1 < expected < 0.99
    assert metrics.ssim(x, y) == pytest.approx(expected, rel=0, abs=1e-12)
    assert metrics.ssim(x, x) == 1.0


def test_ssim_rejects_frames_smaller_than_the_window():
    tiny = np.zeros((10, 30, 3), np.uint8)
    with pytest.raises(TalkingPoseError, match="11×11"):
        metrics.ssim(tiny, tiny)


# --- directory mode ----------------------------------------------------------------------------------------


def test_directory_mode(tmp_path):
    real_dir, gen_dir = tmp_path / "real", tmp_path / "gen"
    _write_mp4(real_dir / "a.mp4", _synth_frames(20, 32, 24, seed=11))
    _write_mp4(gen_dir / "a.mp4", _synth_frames(20, 32, 24, seed=12))
    _write_mp4(real_dir / "talks/b.mp4", _synth_frames(12, 32, 24, seed=13))
    _write_mp4(gen_dir / "talks/b.mp4", _synth_frames(15, 16, 12, seed=14))
    _write_mp4(real_dir / "only_real.mp4", _synth_frames(3, 16, 16, seed=15))
    _write_mp4(gen_dir / "talks/only_gen.mp4", _synth_frames(3, 16, 16, seed=16))
    seen = []
    out = metrics.compare_dirs(real_dir, gen_dir, delta=2, progress=lambda done, total, key: seen.append(done))

    assert seen == [1, 2]
    assert out["num_pairs"] == 2 and out["delta"] == 2
    assert out["missing_in_real"] == ["talks/only_gen.mp4"]
    assert out["missing_in_generated"] == ["only_real.mp4"]
    assert [p["key"] for p in out["pairs"]] == ["a.mp4", "talks/b.mp4"]
    refs = [_reference_tje(real_dir / k, gen_dir / k, 2) for k in ("a.mp4", "talks/b.mp4")]
    for pair, (mean, n_terms, _) in zip(out["pairs"], refs):
        assert pair["n_terms"] == n_terms
        assert pair["avg_tje"] == pytest.approx(mean, abs=1e-9)
    assert [p["n_frames"] for p in out["pairs"]] == [20, 12]
    assert out["overall_avg_tje"] == pytest.approx((refs[0][0] + refs[1][0]) / 2, abs=1e-9)
    assert out["overall_weighted_avg_tje"] == pytest.approx((refs[0][2] + refs[1][2]) / (18 + 10), abs=1e-9)
    psnr = [p["psnr_8bit"] for p in out["pairs"]]
    assert out["overall_avg_psnr_8bit"] == pytest.approx(sum(psnr) / 2)
    assert out["overall_weighted_avg_psnr_8bit"] == pytest.approx((psnr[0] * 20 + psnr[1] * 12) / 32)
    assert out["num_frames"] == 32
    for name in ("psnr_float", "ssim"):
        assert f"overall_avg_{name}" in out and f"overall_weighted_avg_{name}" in out


def test_directory_mode_without_common_videos(tmp_path):
    _write_mp4(tmp_path / "real/a.mp4", _synth_frames(3, 16, 16, seed=1))
    _write_mp4(tmp_path / "gen/b.mp4", _synth_frames(3, 16, 16, seed=1))
    with pytest.raises(TalkingPoseError, match="same relative path"):
        metrics.compare_dirs(tmp_path / "real", tmp_path / "gen")
    with pytest.raises(TalkingPoseError, match="does not exist"):
        metrics.compare_dirs(tmp_path / "real", tmp_path / "nowhere")


# --- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("delta", [0, -1, 1.5, True])
def test_bad_delta(videos, delta):
    frames = _synth_frames(3, 16, 16, seed=1)
    with pytest.raises(TalkingPoseError, match="at least 1"):
        metrics.compare_frames(frames, frames, delta=delta)
    with pytest.raises(TalkingPoseError, match="at least 1"):
        metrics.compare_videos(videos["real"], videos["gen"], delta=delta)
    with pytest.raises(TalkingPoseError, match="at least 1"):
        metrics.TemporalJitter(delta)


def test_empty_videos(tmp_path, videos):
    frames = _synth_frames(3, 16, 16, seed=1)
    with pytest.raises(TalkingPoseError, match="real .* has no frames"):
        metrics.compare_frames([], frames)
    with pytest.raises(TalkingPoseError, match="generated video has no frames"):
        metrics.compare_frames(frames, iter(()))
    empty = tmp_path / "empty.avi"  # a container with a video stream and not one frame
    with av.open(str(empty), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        container.start_encoding()
    with pytest.raises(TalkingPoseError, match="empty.avi has no frames"):
        metrics.compare_videos(videos["real"], empty)


def test_unreadable_files(tmp_path, videos):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(TalkingPoseError, match="junk.mp4"):
        metrics.compare_videos(junk, videos["gen"])
    with pytest.raises(TalkingPoseError, match="not found"):
        metrics.compare_videos(videos["real"], tmp_path / "missing.mp4")


def test_bad_frames_and_metric_names():
    with pytest.raises(TalkingPoseError, match="uint8 or float"):
        metrics.compare_frames([np.zeros((16, 16, 3), np.int32)], [np.zeros((16, 16, 3), np.int32)])
    with pytest.raises(TalkingPoseError, match="shape"):
        metrics.compare_frames([np.zeros((16, 16, 2), np.uint8)], [np.zeros((16, 16, 2), np.uint8)])
    with pytest.raises(TalkingPoseError, match="Unknown"):
        metrics.compare_frames([np.zeros((16, 16, 3), np.uint8)], [np.zeros((16, 16, 3), np.uint8)], metrics=["lpips"])


def test_video_metrics_node_matches_the_engine_on_image_batches():
    import torch

    from nodes.metrics_nodes import TalkingPoseVideoMetrics

    rng = np.random.default_rng(3)
    real = rng.integers(0, 256, (6, 32, 40, 3), dtype=np.uint8)
    generated = np.clip(real.astype(int) + rng.integers(-20, 21, real.shape), 0, 255).astype(np.uint8)
    out = TalkingPoseVideoMetrics().measure(torch.from_numpy(real / 255.0).float(), torch.from_numpy(generated / 255.0).float(), 2)
    tje, psnr, ssim_value, report = out["result"]
    expected = metrics.compare_frames(list(real), list(generated), delta=2)
    assert abs(tje - expected.tje) < 1e-6 and abs(psnr - expected.psnr_8bit) < 1e-6 and abs(ssim_value - expected.ssim) < 1e-6
    assert "6 frame pairs" in report and out["ui"]["text"] == [report]


def test_videos_of_different_length_or_rate_are_compared_with_a_warning_and_progress(tmp_path, caplog):
    frames = _synth_frames(12, 32, 32, seed=4)
    real = _write_mp4(tmp_path / "real.mp4", frames, fps=25)
    shorter = _write_mp4(tmp_path / "short.mp4", frames[:9], fps=25)
    slower = _write_mp4(tmp_path / "slow.mp4", frames, fps=10)
    seen = []
    with caplog.at_level("WARNING", logger="TalkingPose"):
        result = metrics.compare_videos(real, shorter, metrics=("psnr_8bit",), progress=lambda d, t: seen.append((d, t)))
    assert result.n_frames == 9 and seen == [(d, 9) for d in range(1, 10)]
    assert "has 12 frames" in caplog.text and "has 9: only the first 9 of each are compared" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="TalkingPose"):
        metrics.compare_videos(real, slower, metrics=("psnr_8bit",))
    assert "runs at 25.000 fps" in caplog.text and "at 10.000 fps: frames are paired by number" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="TalkingPose"):
        metrics.compare_videos(real, real, metrics=("psnr_8bit",))
    assert caplog.text == ""


def test_metrics_command_shows_progress_and_the_warning(tmp_path):
    import subprocess
    import sys

    from helpers import PACK_ROOT

    frames = _synth_frames(6, 32, 32, seed=5)
    real = _write_mp4(tmp_path / "real.mp4", frames)
    gen = _write_mp4(tmp_path / "gen.mp4", frames[:4])
    result = subprocess.run([sys.executable, "cli.py", "metrics", "--real", str(real), "--generated", str(gen),
                             "--metrics", "psnr_8bit"], cwd=PACK_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "only the first 4 of each are compared" in result.stderr
    assert "metrics 4/4 frames" in result.stderr and "n_frames 4" in result.stdout

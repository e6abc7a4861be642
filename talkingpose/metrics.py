"""Video metrics of the TalkingPose paper: temporal jitter error (TJE), PSNR (float and 8-bit) and SSIM.

Everything streams: a video pair is read one frame at a time and only the last delta+1 frames of each video are
held (for TJE), so any length fits in memory.

How a real and a generated video are paired (the same for all metrics, as the official `tools/tje_error.py`
does it for TJE): frame t of one with frame t of the other, until the shorter video ends; the first real frame
fixes the size, and any frame of another size (normally the generated ones) is resized to it with
`cv2.INTER_AREA`. Grey frames count as three equal channels and an alpha channel is dropped.

TJE(delta) of a video pair, on 8-bit frames R (real) and G (generated), one term per t = delta … n-1:

    term_t = mean over the 3 channels of the channel's mean over pixels of | |R_t - R_{t-delta}| - |G_t - G_{t-delta}| |
    TJE    = mean of term_t;  undefined (None) when the pair has fewer than delta+1 frames.

It is computed with the same OpenCV operations as the official script (saturating uint8 `absdiff`, `cv2.mean`,
channel means added in B, G, R order), so it matches it to the last bit on the same frames. The official script
has no default delta (it is a required argument); its README runs it with delta = 2, which is the default here. Our
videos are decoded with PyAV, which on the sample videos gives the very same pixels as the OpenCV decoder the
official script uses.

PSNR, two variants, each computed per frame and then averaged over the frames of a video (not from the mean
squared error of the whole video); a frame pair that is identical has PSNR = inf, and then so has the average:

* `psnr_float`: frames as floats in [0, 1] (uint8 frames are divided by 255), data range 1 — for frames
  straight out of the sampler, before they are rounded to 8 bits.
* `psnr_8bit`: frames as uint8 (float frames are first quantised the way the official pipeline saves videos,
  `uint8(clip(x, 0, 1) · 255)`, i.e. truncated), data range 255 — for decoded video files. On uint8 input the
  two variants agree (up to float rounding), since MSE/1² = (MSE·255²)/255².

MSE is taken over all pixels and channels of a frame.

SSIM: Wang et al. 2004 with an 11×11 Gaussian window of sigma = 1.5, K1 = 0.01, K2 = 0.03, data range 255 on 8-bit
frames, population (not sample) covariances, computed on each RGB channel and averaged over the channels; the
SSIM map is averaged over the pixels at least 5 pixels from the border (where the window fits). This is
scikit-image's `structural_similarity(real, gen, channel_axis=2, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=255)`, the usual convention in video-generation papers; per video,
the mean of the per-frame SSIM.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from .errors import TalkingPoseError

log = logging.getLogger("TalkingPose")

DEFAULT_TJE_DELTA = 2
ALL_METRICS = ("tje", "psnr_float", "psnr_8bit", "ssim")

_SSIM_SIGMA = 1.5
_SSIM_RADIUS = 5  # skimage: int(truncate 3.5 · sigma + 0.5) -> an 11×11 window
_SSIM_K1, _SSIM_K2 = 0.01, 0.03


def check_delta(delta) -> int:
    if isinstance(delta, bool) or not isinstance(delta, (int, np.integer)) or delta < 1:
        raise TalkingPoseError(f"The TJE frame distance delta must be a whole number of at least 1; got {delta!r}.")
    return int(delta)


def _check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in ALL_METRICS]
    if unknown or not metrics:
        raise TalkingPoseError(f"Unknown or no metrics {unknown or metrics}; choose from {', '.join(ALL_METRICS)}.")
    return metrics


def to_rgb(frame) -> np.ndarray:
    """An H×W×3 view of a frame: grey is repeated over three channels, alpha dropped (as the official script
    does); uint8 or float only."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 and not np.issubdtype(frame.dtype, np.floating):
        raise TalkingPoseError(f"Frames must be uint8 or float arrays; got {frame.dtype}.")
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.ndim != 3 or frame.shape[2] not in (1, 3, 4) or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise TalkingPoseError(f"Frames must be H×W, H×W×1, H×W×3 or H×W×4 arrays; got shape {frame.shape}.")
    if frame.shape[2] == 1:
        return np.repeat(frame, 3, axis=2)
    return frame[:, :, :3]


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """8-bit version of a frame; floats in [0, 1] are clipped and truncated like the official pipeline's
    `(x * 255).numpy().astype(np.uint8)` when it saves videos."""
    if frame.dtype == np.uint8:
        return frame
    return (np.clip(frame, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_unit_float(frame: np.ndarray) -> np.ndarray:
    if frame.dtype == np.uint8:
        return frame.astype(np.float64) / 255.0
    return frame.astype(np.float64, copy=False)


def _resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (frame.shape[1], frame.shape[0]) == size:
        return frame
    if frame.dtype != np.uint8:
        frame = frame.astype(np.float64, copy=False)
    return cv2.resize(np.ascontiguousarray(frame), size, interpolation=cv2.INTER_AREA)


def _psnr(mse: float, data_range: float) -> float:
    return math.inf if mse == 0 else 10.0 * math.log10(data_range * data_range / mse)


def psnr_float(real, gen) -> float:
    """PSNR of one frame pair of the same size, frames as floats in [0, 1] (uint8 divided by 255), data range 1."""
    real, gen = to_unit_float(to_rgb(real)), to_unit_float(to_rgb(gen))
    _check_same_shape(real, gen)
    return _psnr(float(np.mean(np.square(real - gen))), 1.0)


def psnr_8bit(real, gen) -> float:
    """PSNR of one frame pair of the same size on uint8 values (floats quantised by `to_uint8`), data range 255."""
    real, gen = to_uint8(to_rgb(real)), to_uint8(to_rgb(gen))
    _check_same_shape(real, gen)
    diff = real.astype(np.int32) - gen.astype(np.int32)
    return _psnr(float(np.sum(diff * diff, dtype=np.int64)) / diff.size, 255.0)


def _gaussian_window() -> np.ndarray:
    x = np.arange(-_SSIM_RADIUS, _SSIM_RADIUS + 1, dtype=np.float64)
    w = np.exp(-(x * x) / (2.0 * _SSIM_SIGMA * _SSIM_SIGMA))
    return w / w.sum()


_WINDOW = _gaussian_window()


def ssim(real, gen) -> float:
    """SSIM of one frame pair of the same size (see the module notes), on 8-bit values (floats quantised by
    `to_uint8`)."""
    real, gen = to_uint8(to_rgb(real)), to_uint8(to_rgb(gen))
    _check_same_shape(real, gen)
    return _ssim_uint8(real, gen)


def _ssim_uint8(real: np.ndarray, gen: np.ndarray) -> float:
    height, width = real.shape[:2]
    side = 2 * _SSIM_RADIUS + 1
    if height < side or width < side:
        raise TalkingPoseError(f"SSIM needs frames of at least {side}×{side} pixels; got {width}×{height}.")
    x = real.astype(np.float64)
    y = gen.astype(np.float64)

    def blur(a):
        # Only pixels whose window lies inside the frame are kept below, so the border rule never matters.
        return cv2.sepFilter2D(a, cv2.CV_64F, _WINDOW, _WINDOW, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    vxy = blur(x * y) - mx * my
    c1 = (_SSIM_K1 * 255.0) ** 2
    c2 = (_SSIM_K2 * 255.0) ** 2
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    r = _SSIM_RADIUS
    # mean per channel, then over channels, as skimage does for channel_axis
    return float(np.mean(s[r:-r, r:-r].reshape(-1, 3).mean(axis=0)))


def _check_same_shape(real: np.ndarray, gen: np.ndarray) -> None:
    if real.shape != gen.shape:
        raise TalkingPoseError(f"The two frames differ in size: {real.shape} and {gen.shape}.")


class TemporalJitter:
    """Streaming TJE for one video pair: `add` same-size 8-bit RGB frame pairs in order; holds delta+1 of each."""

    def __init__(self, delta: int = DEFAULT_TJE_DELTA):
        self.delta = check_delta(delta)
        self._real: deque = deque(maxlen=self.delta + 1)
        self._gen: deque = deque(maxlen=self.delta + 1)
        self.total = 0.0
        self.n_terms = 0

    def add(self, real: np.ndarray, gen: np.ndarray) -> float | None:
        """Takes frame t of both videos; returns term_t, or None while t < delta."""
        self._real.append(real)
        self._gen.append(gen)
        if len(self._real) <= self.delta:
            return None
        d_real = cv2.absdiff(self._real[-1], self._real[0])
        d_gen = cv2.absdiff(self._gen[-1], self._gen[0])
        m = cv2.mean(cv2.absdiff(d_real, d_gen))
        # The official script sees BGR frames and adds m[B] + m[G] + m[R]; ours are RGB, so the same order
        # is m[2] + m[1] + m[0] — float addition is not associative, and this keeps results bit-identical.
        term = (m[2] + m[1] + m[0]) / 3.0
        self.total += term
        self.n_terms += 1
        return term

    @property
    def mean(self) -> float | None:
        return self.total / self.n_terms if self.n_terms else None


@dataclass
class VideoMetrics:
    """Figures for one video pair. Per-frame metrics are means over the `n_frames` compared frames; metrics
    not asked for are None. `tje` is None also when there are fewer than delta+1 frames."""

    n_frames: int
    delta: int
    tje: float | None = None
    tje_terms: int = 0
    tje_sum: float = 0.0
    psnr_float: float | None = None
    psnr_8bit: float | None = None
    ssim: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class MetricsAccumulator:
    """All metrics of one video pair, fed one frame pair at a time (see the module notes for the pairing)."""

    def __init__(self, delta: int = DEFAULT_TJE_DELTA, metrics: Sequence[str] = ALL_METRICS):
        self.delta = check_delta(delta)
        self.metrics = _check_metrics(metrics)
        self._tje = TemporalJitter(self.delta) if "tje" in self.metrics else None
        self._sums = {m: 0.0 for m in ("psnr_float", "psnr_8bit", "ssim") if m in self.metrics}
        self._size: tuple[int, int] | None = None
        self.n_frames = 0

    def add(self, real, gen) -> None:
        real, gen = to_rgb(real), to_rgb(gen)
        if self._size is None:
            self._size = (real.shape[1], real.shape[0])
        real8 = _resize(to_uint8(real), self._size)
        gen8 = _resize(to_uint8(gen), self._size)
        if self._tje is not None:
            self._tje.add(real8, gen8)
        if "psnr_8bit" in self._sums:
            self._sums["psnr_8bit"] += psnr_8bit(real8, gen8)
        if "ssim" in self._sums:
            self._sums["ssim"] += _ssim_uint8(real8, gen8)
        if "psnr_float" in self._sums:
            if real.dtype == np.uint8 and gen.dtype == np.uint8:
                real_f, gen_f = real8, gen8  # resizing uint8 first keeps psnr_float equal to psnr_8bit here
            else:
                real_f, gen_f = _resize(to_unit_float(real), self._size), _resize(to_unit_float(gen), self._size)
            self._sums["psnr_float"] += psnr_float(real_f, gen_f)
        self.n_frames += 1

    def result(self) -> VideoMetrics:
        if self.n_frames == 0:
            raise TalkingPoseError("No frame pairs were compared: one of the videos has no frames.")
        out = VideoMetrics(n_frames=self.n_frames, delta=self.delta)
        if self._tje is not None:
            out.tje, out.tje_terms, out.tje_sum = self._tje.mean, self._tje.n_terms, self._tje.total
        for name, total in self._sums.items():
            setattr(out, name, total / self.n_frames)
        return out


def compare_frames(real_frames: Iterable, gen_frames: Iterable, delta: int = DEFAULT_TJE_DELTA,
                   metrics: Sequence[str] = ALL_METRICS,
                   labels: tuple[str, str] = ("The real (reference) video", "The generated video"),
                   progress: Callable[[int], None] | None = None) -> VideoMetrics:
    """Metrics of two frame sequences (any iterables of H×W[×C] uint8 or [0, 1] float arrays), paired until the
    shorter one ends; reads one frame of each at a time. `labels` name the two in error messages;
    `progress(pairs done)` is called after each pair."""
    acc = MetricsAccumulator(delta, metrics)
    real_it, gen_it = iter(real_frames), iter(gen_frames)
    while True:
        real = next(real_it, None)
        if real is None:
            if acc.n_frames == 0:
                raise TalkingPoseError(f"{labels[0]} has no frames; nothing can be compared.")
            break
        gen = next(gen_it, None)
        if gen is None:
            if acc.n_frames == 0:
                raise TalkingPoseError(f"{labels[1]} has no frames; nothing can be compared.")
            break
        acc.add(real, gen)
        if progress is not None:
            progress(acc.n_frames)
    return acc.result()


def compare_videos(real_path, gen_path, delta: int = DEFAULT_TJE_DELTA, metrics: Sequence[str] = ALL_METRICS,
                   progress: Callable[[int, int], None] | None = None) -> VideoMetrics:
    """Metrics of two video files (decoded with PyAV, one frame at a time). Videos of different lengths or frame
    rates are compared all the same (frame t with frame t, up to the shorter one's end), with a warning that says
    what differs. `progress(done, total)` is called after each frame pair."""
    from .video_io import VideoReader

    check_delta(delta)
    _check_metrics(metrics)
    with VideoReader(real_path) as real, VideoReader(gen_path) as gen:
        labels = (f"The real video {real_path}", f"The generated video {gen_path}")
        total = min(real.frame_count, gen.frame_count)
        if real.frame_count != gen.frame_count:
            log.warning("%s has %d frames and %s has %d: only the first %d of each are compared.", real_path,
                        real.frame_count, gen_path, gen.frame_count, total)
        if real.fps != gen.fps:
            log.warning("%s runs at %.3f fps and %s at %.3f fps: frames are paired by number, not by time, so a pair "
                        "can show different moments.", real_path, float(real.fps), gen_path, float(gen.fps))
        step = None if progress is None else (lambda done: progress(done, total))
        return compare_frames(real, gen, delta, metrics, labels, step)


def _index_videos(root: Path, pattern: str) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob(pattern)) if p.is_file()}


def overall(results: Sequence[VideoMetrics], metrics: Sequence[str] = ALL_METRICS) -> dict:
    """Figures over several video pairs: for every metric M, `overall_avg_M` is the mean over videos (videos where
    M is undefined left out) and `overall_weighted_avg_M` the mean over all TJE terms (TJE) or all compared frames
    (the others); `num_frames` is the number of compared frames."""
    out = {}
    if "tje" in metrics:
        per_video = [r.tje for r in results if r.tje is not None]
        terms = sum(r.tje_terms for r in results)
        out["overall_avg_tje"] = sum(per_video) / len(per_video) if per_video else None
        out["overall_weighted_avg_tje"] = sum(r.tje_sum for r in results) / terms if terms else None
    frames = sum(r.n_frames for r in results)
    for name in metrics:
        if name == "tje":
            continue
        values = [getattr(r, name) for r in results]
        out[f"overall_avg_{name}"] = sum(values) / len(values) if values else None
        out[f"overall_weighted_avg_{name}"] = sum(v * r.n_frames for v, r in zip(values, results)) / frames if frames else None
    out["num_frames"] = frames
    return out


def compare_dirs(real_dir, gen_dir, delta: int = DEFAULT_TJE_DELTA, metrics: Sequence[str] = ALL_METRICS,
                 pattern: str = "*.mp4", progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Metrics of every video in `gen_dir` against the video at the same relative path in `real_dir`
    (searched recursively for `pattern`), as a JSON-ready dict.

    The TJE keys are those of the official script's output (`delta`, `num_pairs`, `overall_avg_tje`,
    `overall_weighted_avg_tje`, `missing_in_real`, `missing_in_generated`, and per pair `key`, `real`,
    `generated`, `avg_tje`, `n_terms`). For every metric M asked for: `overall_avg_M` is the mean over videos
    (videos where M is undefined left out), `overall_weighted_avg_M` the mean over all TJE terms (TJE) or all
    compared frames (the others). PSNR can be inf (identical frames), which `json.dump` writes as `Infinity`.
    `progress(done, total, key)` is called after each pair.
    """
    delta = check_delta(delta)
    metrics = _check_metrics(metrics)
    real_dir, gen_dir = Path(real_dir), Path(gen_dir)
    for folder, what in ((real_dir, "real"), (gen_dir, "generated")):
        if not folder.is_dir():
            raise TalkingPoseError(f"The {what} video folder {folder} does not exist.")
    real_map, gen_map = _index_videos(real_dir, pattern), _index_videos(gen_dir, pattern)
    common = sorted(set(real_map) & set(gen_map))
    if not common:
        raise TalkingPoseError(
            f"No videos matching {pattern!r} have the same relative path in {real_dir} and {gen_dir}; "
            "generated videos must be named like the real ones they are compared with."
        )
    pairs, results = [], []
    for i, key in enumerate(common):
        res = compare_videos(real_map[key], gen_map[key], delta, metrics)
        results.append(res)
        pair = {"key": key, "real": str(real_map[key]), "generated": str(gen_map[key]), "n_frames": res.n_frames}
        if "tje" in metrics:
            pair.update(avg_tje=res.tje, n_terms=res.tje_terms)
        for name in metrics:
            if name != "tje":
                pair[name] = getattr(res, name)
        pairs.append(pair)
        if progress is not None:
            progress(i + 1, len(common), key)

    out = {"delta": delta, "num_pairs": len(common), **overall(results, metrics)}
    out["missing_in_real"] = sorted(set(gen_map) - set(real_map))
    out["missing_in_generated"] = sorted(set(real_map) - set(gen_map))
    out["pairs"] = pairs
    return out

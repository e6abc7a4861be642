"""The paper's self-identity evaluation: every video of a dataset is animated from its own first frame, driven
by the whole video, and the result is measured against the real video (TJE, PSNR, SSIM).

The renders go through `run_batch` (so they are parallel, resumable and skipped when already made) and the
metrics are Ray tasks, one per video, computed with `metrics.compare_videos` — the very function behind
`talkingpose metrics`, so each video's figures equal that command's on the same pair.
"""
from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
from pathlib import Path

from .. import durable
from .. import metrics as video_metrics
from ..errors import TalkingPoseError
from .driver import BatchOptions, Listener, ray_session, run_batch
from .manifest import RenderOptions

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")
MANIFEST = "jobs.jsonl"  # the job list handed to the batch, in the output folder


def dataset_rows(dataset: Path, poses_dir: Path | None = None, frames: int | None = None) -> list[dict]:
    """One job a video of `dataset` (not its subfolders): the video drives, its first frame is the source; a
    ready DWPose render `poses_dir/NAME.mp4` or keypoint track `poses_dir/NAME.json` is used when present
    (poses_dir defaults to `dataset/dwpose`), else poses are extracted."""
    dataset = Path(dataset)
    if not dataset.is_dir():
        raise TalkingPoseError(f"The dataset folder {dataset} does not exist.")
    poses_dir = Path(poses_dir) if poses_dir is not None else dataset / "dwpose"
    videos = sorted(p for p in dataset.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise TalkingPoseError(f"No videos ({', '.join(VIDEO_SUFFIXES)}) in {dataset}.")
    rows = []
    for video in videos:
        row = {"out": f"{video.stem}.mp4", "driving": str(video.resolve())}
        if (poses_dir / f"{video.stem}.mp4").is_file():
            row["poses"] = str((poses_dir / f"{video.stem}.mp4").resolve())
        elif (poses_dir / f"{video.stem}.json").is_file():
            row["keypoints"] = str((poses_dir / f"{video.stem}.json").resolve())
        if frames is not None:
            row["frames"] = frames
        rows.append(row)
    return rows


def measure(real: str, generated: str, deltas: tuple[int, ...]) -> dict:
    """All metrics of one pair: TJE for each delta, PSNR and SSIM (a Ray task)."""
    from ..console import make_streams_safe

    make_streams_safe()  # as in RenderWorker: nothing the task prints may end it
    first = video_metrics.compare_videos(real, generated, delta=deltas[0])
    tje = {deltas[0]: first}
    for delta in deltas[1:]:
        tje[delta] = video_metrics.compare_videos(real, generated, delta=delta, metrics=("tje",))
    return {"first": first, "tje": tje}


def _finite(value):
    return None if value is None else (value if math.isfinite(value) else str(value))  # inf PSNR: identical frames


def _same_job_list(manifest: Path, text: str) -> bool:
    """Whether `manifest` is a plain file holding `text` (the job list of an interrupted run of this evaluation)."""
    try:
        return manifest.is_file() and not manifest.is_symlink() and manifest.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False


def _check_own_files(out_dir: Path, manifest_text: str, overwrite: bool) -> None:
    """Refuses, before any render, to replace a file of the three it writes that is already there (an earlier
    evaluation's, or the user's own) unless asked; the job list of an interrupted run of the same evaluation is
    the one it would write again, so a rerun goes on."""
    if overwrite:
        return
    manifest = out_dir / MANIFEST
    for path in (manifest, out_dir / "metrics.json", out_dir / "metrics.csv"):
        if not os.path.lexists(path) or (path == manifest and _same_job_list(manifest, manifest_text)):
            continue
        raise TalkingPoseError(
            f"{path} already exists (an earlier evaluation's with other videos or settings, or another file); it is "
            f"left as it is. Choose another --out-dir, or add --overwrite to replace it (finished renders in "
            f"{out_dir / 'videos'} are reused).")


def evaluate(dataset: Path, out_dir: Path, options: RenderOptions, batch: BatchOptions | None = None,
             ray_address: str | None = None, poses_dir: Path | None = None, frames: int | None = None,
             deltas: tuple[int, ...] = (2,), listener: Listener | None = None, overwrite: bool = False) -> dict:
    """Render and measure every video of `dataset`; writes `out_dir/metrics.json` and `out_dir/metrics.csv`
    (the videos go to `out_dir/videos/`, with the batch's summary.json) and returns the metrics.json content.
    Those files, and the job list `out_dir/jobs.jsonl`, replace files already there only with `overwrite`."""
    deltas = (2, *[d for d in dict.fromkeys(video_metrics.check_delta(d) for d in deltas) if d != 2])
    out_dir = Path(out_dir)
    rows = dataset_rows(dataset, poses_dir, frames)
    manifest_text = "".join(json.dumps(row) + "\n" for row in rows)
    manifest = out_dir / MANIFEST
    _check_own_files(out_dir, manifest_text, overwrite)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not _same_job_list(manifest, manifest_text):
            durable.write_text(manifest, manifest_text, replace=overwrite)
    except OSError as exc:
        raise TalkingPoseError(f"Cannot write to the output folder {out_dir} ({exc.strerror or exc}). "
                               "Choose a folder you can write to with --out-dir.") from None
    with ray_session(ray_address) as ray:
        results = run_batch(manifest, out_dir / "videos", options, batch, ray_address, listener)
        drivers = {row["out"]: row["driving"] for row in rows}
        made = [r for r in results if r.status in ("done", "skipped")]
        task = ray.remote(num_cpus=1)(measure)
        pending = [task.remote(drivers[r.job], str(out_dir / "videos" / r.job), deltas) for r in made]
        measured = ray.get(pending)
    videos = []
    for result, figures in zip(made, measured):
        first = figures["first"]
        videos.append({
            "video": result.job, "real": drivers[result.job], "generated": str(out_dir / "videos" / result.job),
            "frames": first.n_frames, **{f"tje_d{d}": figures["tje"][d].tje for d in deltas},
            "psnr_float": _finite(first.psnr_float), "psnr_8bit": _finite(first.psnr_8bit), "ssim": first.ssim,
        })
    report = {
        "dataset": str(Path(dataset).resolve()), "out_dir": str(out_dir.resolve()), "deltas": list(deltas),
        "videos": videos, "overall": _overall(measured, deltas),
        "failed": [{"video": r.job or f"line {r.line}", "status": r.status, "message": r.message}
                   for r in results if r.status not in ("done", "skipped")],
    }
    try:
        durable.write_text(out_dir / "metrics.json", json.dumps(report, indent=1), replace=overwrite)
        _write_csv(out_dir / "metrics.csv", report, overwrite)
    except OSError as exc:
        raise TalkingPoseError(
            f"Could not write the metrics to {out_dir} ({exc.strerror or exc}: {exc.filename}). The renders are kept in "
            f"{out_dir / 'videos'}; run the same command again to measure them"
            + (" (free some disk space first)." if exc.errno == errno.ENOSPC else ".")
        ) from exc
    return report


def _overall(measured: list[dict], deltas) -> dict:
    """Mean over videos and frame-weighted mean (over TJE terms for TJE), as `talkingpose metrics` on folders."""
    if not measured:
        return {}
    base = video_metrics.overall([m["first"] for m in measured], ("psnr_float", "psnr_8bit", "ssim"))
    out = {"videos": len(measured), "frames": base.pop("num_frames")}
    for delta in deltas:
        tje = video_metrics.overall([m["tje"][delta] for m in measured], ("tje",))
        out[f"mean_tje_d{delta}"], out[f"weighted_tje_d{delta}"] = tje["overall_avg_tje"], tje["overall_weighted_avg_tje"]
    for name in ("psnr_float", "psnr_8bit", "ssim"):
        out[f"mean_{name}"] = _finite(base[f"overall_avg_{name}"])
        out[f"weighted_{name}"] = _finite(base[f"overall_weighted_avg_{name}"])
    return out


def columns(report: dict) -> list[str]:
    return ["video", "frames", *[f"tje_d{d}" for d in report["deltas"]], "psnr_float", "psnr_8bit", "ssim"]


def table_rows(report: dict) -> list[list[str]]:
    """The per-video rows and the two overall rows, as text (the printed table and the CSV)."""
    names = columns(report)
    text = lambda v: "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))  # noqa: E731
    rows = [[text(video.get(name)) for name in names] for video in report["videos"]]
    overall = report["overall"]
    if overall:
        for label, prefix in (("mean", "mean_"), ("frame-weighted mean", "weighted_")):
            rows.append([label, str(overall["frames"]) if prefix == "weighted_" else ""]
                        + [text(overall.get(prefix + name)) for name in names[2:]])
    return rows


def _write_csv(path: Path, report: dict, overwrite: bool) -> None:
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(columns(report))
    writer.writerows(table_rows(report))
    durable.write_text(path, text.getvalue(), replace=overwrite)


"""Frames per second of DWPose extraction (+ drawing) on a real clip.

    python -m benchmarks.bench_pose                       # synthetic golden models, 120 frames of vid1
    python -m benchmarks.bench_pose --models <dir with yolox_l.onnx and dw-ll_ucoco_384.onnx> --frames 60

With the synthetic golden models the networks cost almost nothing, so the number measures the pack's own CPU
work (resizing, letterbox, crops, decoding, drawing). With the real weights it measures the whole pipeline.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent


def read_frames(video: Path, count: int):
    import av

    frames = []
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) >= count:
                break
    return frames


def main() -> int:
    shared = PACK_ROOT.parent / "shared"
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=shared / "golden" / "dwpose-a" / "models" / "det")
    parser.add_argument("--video", type=Path, default=shared / "samples" / "driving" / "vid1.mp4")
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--batch", type=int, nargs="*", default=[1, 4, 8], help="frames per pose-model batch")
    parser.add_argument("--device-index", type=int, default=0)
    args = parser.parse_args()

    from talkingpose.pose import PoseExtractor, draw_pose

    frames = read_frames(args.video, args.frames)
    ex = PoseExtractor.from_folders([args.models], device_index=args.device_index)
    print(f"{len(frames)} frames of {frames[0].shape[1]}x{frames[0].shape[0]} from {args.video.name}; "
          f"providers {ex.active_providers}; pose batch dynamic: {ex.pose_batch_is_dynamic}")
    list(ex.iter_extract(frames[:4]))  # warm-up

    for batch in args.batch:
        start = time.perf_counter()
        poses = list(ex.iter_extract(frames, frames_per_batch=batch))
        extracted = time.perf_counter()
        for pose in poses:
            draw_pose(pose)
        drawn = time.perf_counter()
        n = len(frames)
        print(f"frames_per_batch={batch:2d}: extract {n / (extracted - start):7.1f} frames/s, "
              f"extract+draw {n / (drawn - start):7.1f} frames/s, draw alone {n / (drawn - extracted):7.1f} frames/s")

    # Where the time goes, per frame (batch of one).
    import numpy as np

    from talkingpose.pose import detector as det, estimator as est

    stages = {"prepare": 0.0, "detect": 0.0, "crops": 0.0, "pose model": 0.0, "decode": 0.0}
    for image in frames:
        t0 = time.perf_counter()
        canvas = ex.prepare(image)
        t1 = time.perf_counter()
        boxes = det.run_detector(ex.det_session, canvas)
        t2 = time.perf_counter()
        if boxes.shape[0] == 0:
            boxes = np.array([[0, 0, canvas.shape[1], canvas.shape[0]]])
        blob, center, scale = est.make_crops(canvas, boxes, ex.pose_input_wh)
        t3 = time.perf_counter()
        sx, sy = est.run_pose_model(ex.pose_session, blob)
        t4 = time.perf_counter()
        locs, scores = est.decode_simcc(sx, sy)
        est.to_openpose_order(est.to_image_coords(locs, center, scale, ex.pose_input_wh), scores)
        t5 = time.perf_counter()
        for key, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            stages[key] += dt
    n = len(frames)
    print("per frame: " + ", ".join(f"{k} {1000 * v / n:.2f} ms" for k, v in stages.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A picture of the loss curve (for the Train node's IMAGE output and for a quick look after a run)."""
from __future__ import annotations

import numpy as np


def loss_curve_image(losses: list[float], width: int = 640, height: int = 320) -> np.ndarray:
    """RGB uint8 [height, width, 3]: each step's loss (light) and a running mean over a twentieth of the run
    (dark), on a linear axis from 0 to the largest loss, with the step count and first/last mean written on it."""
    import cv2

    image = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 56, width - 12, 28, height - 30
    cv2.rectangle(image, (left, top), (right, bottom), (160, 160, 160), 1)
    if not losses:
        cv2.putText(image, "no steps", (left + 8, top + 24), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        return image
    values = np.asarray(losses, dtype=np.float64)
    window = max(1, len(values) // 20)
    smooth = np.convolve(values, np.ones(window) / window, mode="valid")
    peak = float(values.max()) or 1.0

    def points(series: np.ndarray, offset: int) -> np.ndarray:
        steps = np.arange(len(series)) + offset
        x = left + (right - left) * steps / max(1, len(values) - 1)
        y = bottom - (bottom - top) * series / peak
        return np.stack([x, y], axis=1).round().astype(np.int32)

    cv2.polylines(image, [points(values, 0)], False, (170, 200, 240), 1, cv2.LINE_AA)
    cv2.polylines(image, [points(smooth, window - 1)], False, (20, 60, 160), 2, cv2.LINE_AA)
    font, small, ink = cv2.FONT_HERSHEY_SIMPLEX, 0.4, (40, 40, 40)
    cv2.putText(image, f"{peak:.3g}", (4, top + 4), font, small, ink, 1, cv2.LINE_AA)
    cv2.putText(image, "0", (left - 14, bottom + 4), font, small, ink, 1, cv2.LINE_AA)
    cv2.putText(image, f"step {len(values)}", (right - 70, bottom + 18), font, small, ink, 1, cv2.LINE_AA)
    cv2.putText(image, f"loss {smooth[0]:.4f} -> {smooth[-1]:.4f} (running mean of {window})", (left, top - 10),
                font, small, ink, 1, cv2.LINE_AA)
    return image

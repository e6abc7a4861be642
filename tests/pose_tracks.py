"""Synthetic people for the retargeting and smoothing tests: an OpenPose-18 skeleton built bone by bone from
lengths and directions, with 21-point hands and a 68-point face, so every length and angle is known exactly."""
from __future__ import annotations

import numpy as np

from talkingpose.pose.draw import LIMBS
from talkingpose.pose.keypoints import PoseFrame

# Directions (degrees, image coordinates: x right, y down) of an upright person facing the camera.
UPRIGHT = {
    (1, 2): 180.0, (1, 5): 0.0, (2, 3): 100.0, (3, 4): 80.0, (5, 6): 80.0, (6, 7): 100.0,
    (1, 8): 100.0, (8, 9): 90.0, (9, 10): 90.0, (1, 11): 80.0, (11, 12): 90.0, (12, 13): 90.0,
    (1, 0): -90.0, (0, 14): -135.0, (14, 16): 180.0, (0, 15): -45.0, (15, 17): 0.0,
}
DRIVER_LENGTHS = {  # long arms, a big head, narrow shoulders
    (1, 2): 45.0, (1, 5): 45.0, (2, 3): 85.0, (3, 4): 80.0, (5, 6): 85.0, (6, 7): 80.0,
    (1, 8): 150.0, (8, 9): 110.0, (9, 10): 100.0, (1, 11): 150.0, (11, 12): 110.0, (12, 13): 100.0,
    (1, 0): 70.0, (0, 14): 14.0, (14, 16): 18.0, (0, 15): 14.0, (15, 17): 18.0,
}
SOURCE_LENGTHS = {  # broad shoulders, short arms, a small head
    (1, 2): 70.0, (1, 5): 70.0, (2, 3): 60.0, (3, 4): 55.0, (5, 6): 60.0, (6, 7): 55.0,
    (1, 8): 170.0, (8, 9): 120.0, (9, 10): 110.0, (1, 11): 170.0, (11, 12): 120.0, (12, 13): 110.0,
    (1, 0): 50.0, (0, 14): 10.0, (14, 16): 13.0, (0, 15): 10.0, (15, 17): 13.0,
}


def _unit(degrees: float) -> np.ndarray:
    rad = np.deg2rad(degrees)
    return np.array([np.cos(rad), np.sin(rad)])


def hand_points(wrist: np.ndarray, direction: float, size: float) -> np.ndarray:
    """21 hand points: wrist, then 4 points per finger fanned around `direction`; wrist to finger base = size."""
    points = [wrist]
    for finger, spread in enumerate((-50.0, -20.0, 0.0, 20.0, 40.0)):
        base = wrist + size * _unit(direction + spread) * (0.7 if finger == 0 else 1.0)
        for k in range(4):
            points.append(base + 0.35 * size * k * _unit(direction + spread))
    return np.array(points)


def face_points(nose: np.ndarray, size: float) -> np.ndarray:
    """68 points (iBUG layout) with the nose tip (30) on `nose`: jaw width (0<->16) = size, outer eye corners
    (36<->45) = 0.6·size, nose bridge to chin (27<->8) = 0.9·size."""
    u = np.linspace(-1.0, 1.0, 17)
    jaw = np.stack([0.5 * u, 0.45 - 0.7 * u ** 2], -1)  # 0 and 16 at (-/+0.5, -0.25), chin (8) at (0, 0.45)
    brows = np.stack([np.linspace(-0.4, 0.4, 10), np.full(10, -0.4)], -1)
    bridge = np.stack([np.zeros(4), np.linspace(-0.45, -0.15, 4)], -1)  # 27..30 would end above the tip...
    bridge[3] = (0.0, 0.0)  # ...so 30 is the tip itself
    nostrils = np.stack([np.linspace(-0.1, 0.1, 5), np.full(5, 0.05)], -1)
    eye_r = np.stack([np.linspace(-0.3, -0.1, 6), np.full(6, -0.25)], -1)
    eye_l = np.stack([np.linspace(0.1, 0.3, 6), np.full(6, -0.25)], -1)
    mouth = np.stack([np.linspace(-0.2, 0.2, 20), np.full(20, 0.22)], -1)
    points = np.concatenate([jaw, brows, bridge, nostrils, eye_r, eye_l, mouth])
    assert points.shape == (68, 2)
    return nose + size * points


def person(lengths=DRIVER_LENGTHS, angles=None, neck=(256.0, 200.0), canvas_hw=(512, 512), hand_size=22.0,
           face_size=60.0, hidden_joints=(), hidden_hands=(), face=True) -> PoseFrame:
    """One PoseFrame in `canvas_hw`, built bone by bone from the neck (pixels)."""
    angles = {**UPRIGHT, **(angles or {})}
    body = np.zeros((18, 2))
    body[1] = neck
    for bone in LIMBS:
        parent, child = bone
        body[child] = body[parent] + lengths[bone] * _unit(angles[bone])
    score = np.full(18, 0.9)
    score[list(hidden_joints)] = 0.1
    hands = np.stack([hand_points(body[7], angles[(6, 7)], hand_size), hand_points(body[4], angles[(3, 4)], hand_size)])
    height, width = canvas_hw
    scale = np.array([width, height], dtype=float)
    hands_n = hands / scale
    for i in hidden_hands:
        hands_n[i] = -1.0
    face_n = face_points(body[0], face_size) / scale if face else np.full((68, 2), -1.0)
    return PoseFrame(
        canvas_hw=(height, width), body=body / scale, body_score=score,
        hands=hands_n, hand_score=np.where(hands_n[..., 0] == -1, 0.0, 0.9),
        face=face_n, face_score=np.full(68, 0.9 if face else 0.0),
    )


def driving_track(frames=40, seed=0, **kwargs) -> list[PoseFrame]:
    """A driver waving both arms and nodding while drifting sideways; bone lengths constant."""
    rng = np.random.default_rng(seed)
    track = []
    phases = rng.uniform(0, 2 * np.pi, 6)
    for t in range(frames):
        wave = lambda k, amp: amp * np.sin(2 * np.pi * t / 23.0 + phases[k])  # noqa: E731
        angles = {(2, 3): 100 + wave(0, 40), (3, 4): 80 + wave(1, 70), (5, 6): 80 + wave(2, 40),
                  (6, 7): 100 + wave(3, 70), (1, 0): -90 + wave(4, 10), (1, 2): 180 + wave(5, 5),
                  (1, 5): 0 + wave(5, 5)}
        track.append(person(angles=angles, neck=(250.0 + 1.5 * t, 200.0 + 10 * np.sin(t / 7.0)), **kwargs))
    return track


def pixels(frame: PoseFrame, points: np.ndarray) -> np.ndarray:
    height, width = frame.canvas_hw
    return np.asarray(points) * (width, height)


# ---------------------------------------------------------------------------------- a person talking, 25 fps
FPS = 25
TALK_CANVAS = (720, 1280)
RIGHT_ARM = [3, 4] + list(range(18 + 21, 18 + 42))  # right elbow, wrist and hand (body + hands order)
LEFT_ARM = [6, 7] + list(range(18, 18 + 21))
LIPS = list(range(18 + 42 + 48, 18 + 42 + 68))  # face points 48-67


def _points(frame: PoseFrame) -> np.ndarray:
    """The 128 points (body, left hand, right hand, face) in pixels."""
    return pixels(frame, np.concatenate([frame.body, frame.hands.reshape(-1, 2), frame.face]))


def _frame(points: np.ndarray, like: PoseFrame) -> PoseFrame:
    height, width = like.canvas_hw
    p = points / (width, height)
    return PoseFrame(like.canvas_hw, p[:18].copy(), like.body_score.copy(), p[18:60].reshape(2, 21, 2).copy(),
                     like.hand_score.copy(), p[60:].copy(), like.face_score.copy())


def talking_track(frames=250, wrist_speed=25.0, noise_px=2.5, lips_hz=0.0, lips_px=0.0, seed=0):
    """(clean, noisy) tracks of a speaker on a 1280x720 canvas at 25 fps: both arms gesture at 1 Hz along a figure
    of eight (the right wrist and hand at up to `wrist_speed` px per frame, the left at 0.6 of it, the elbows at half
    the wrists' motion), the lower face's lips open `lips_px` px `lips_hz` times a second; every point gets
    `noise_px` of Gaussian detection noise (std per coordinate). The rest of the person keeps still."""
    rng = np.random.default_rng(seed)
    still = person(neck=(640.0, 260.0), canvas_hw=TALK_CANVAS, hand_size=30.0, face_size=90.0)
    rest = _points(still)
    omega = 2 * np.pi / FPS
    reach = wrist_speed / omega  # the right wrist's peak speed, at t = 0, is reach · omega
    clean, noisy = [], []
    for t in range(frames):
        points = rest.copy()
        for arm, phase, size in ((RIGHT_ARM, 0.0, 1.0), (LEFT_ARM, 1.3, 0.6)):
            offset = size * reach * np.array([np.sin(omega * t + phase), 0.5 * np.sin(2 * (omega * t + phase))])
            points[arm] += offset / np.sqrt(2)
            points[arm[0]] -= 0.5 * offset / np.sqrt(2)  # the elbow moves half as far
        points[LIPS, 1] += lips_px * 0.5 * (1 - np.cos(2 * np.pi * lips_hz * t / FPS))
        clean.append(_frame(points, still))
        noisy.append(_frame(points + rng.normal(0.0, noise_px, points.shape), still))
    return clean, noisy


def track_points(frames, which=None) -> np.ndarray:
    """[T, points, 2] pixels of the given point indices (body, left hand, right hand, face order)."""
    stacked = np.stack([_points(f) for f in frames])
    return stacked if which is None else stacked[:, which]

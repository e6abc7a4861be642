"""Argument types shared by several commands."""
from __future__ import annotations

import argparse


def size(text: str) -> tuple[int, int]:
    """`WIDTHxHEIGHT` → (width, height)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size '{text}' is not WIDTHxHEIGHT, e.g. 512x512") from None
    return width, height

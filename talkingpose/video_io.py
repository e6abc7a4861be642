"""Streaming video input and output with PyAV, at constant memory whatever the video's length.

* `VideoReader` yields RGB uint8 frames (H×W×3) one at a time, can start at frame N (for resume) and stop
  after M frames.
* `VideoWriter` encodes RGB frames one at a time into an mp4 (H.264 via libx264 when PyAV's FFmpeg has it,
  MPEG-4 part 2 otherwise; yuv420p) and carries the audio track of another file (the driving video) over.
* The resumable writer of the headless command, built on these, is `segmented_writer.SegmentedVideoWriter`.

Colour: frames are converted RGB->YUV and back by FFmpeg's swscale with its default (BT.601) matrix and the
colour space left unspecified, which is also what decoders assume for an untagged file, so colours round-trip.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from .errors import TalkingPoseError

# Audio codecs the mp4 muxer takes as they are; anything else is re-encoded to AAC.
_MP4_AUDIO_COPY = frozenset({"aac", "mp3", "ac3", "eac3", "alac"})

# Below this many frames to skip, decoding through them is as cheap as a seek and never wrong.
_SEEK_MIN_FRAMES = 64

_AV_ERRORS = (av.error.FFmpegError, OSError, ValueError)


def _fraction_fps(fps) -> Fraction:
    try:
        value = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
    except (TypeError, ValueError):
        value = None
    if value is None or not 0 < value <= 1000:
        raise TalkingPoseError(f"The frame rate must be a number between 0 and 1000; got {fps!r}.")
    return value


def even_size(size) -> tuple[int, int]:
    """yuv420p stores colour at half resolution, so encoders need even sides: odd sides lose their last
    pixel row/column (frames are cropped, never stretched)."""
    width, height = int(size[0]), int(size[1])
    width, height = width - width % 2, height - height % 2
    if width < 2 or height < 2:
        raise TalkingPoseError(f"A video frame must be at least 2×2 pixels; got {size[0]}×{size[1]}.")
    return width, height


def default_video_codec() -> str:
    """libx264 when this PyAV build can encode with it, else FFmpeg's built-in MPEG-4 part 2 encoder."""
    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except _AV_ERRORS:
        return "mpeg4"


def _open_container(path, mode: str, **kwargs):
    path = Path(path)
    if mode == "r" and not path.is_file():
        raise TalkingPoseError(f"Video file not found: {path}. Check the path.")
    try:
        return av.open(str(path), mode, **kwargs)
    except _AV_ERRORS as exc:
        if mode == "r":
            raise TalkingPoseError(
                f"Could not read {path} as a video ({exc}). Use a video file FFmpeg can decode, such as mp4."
            ) from exc
        raise TalkingPoseError(f"Could not create the video file {path} ({exc}). Check the folder is writable.") from exc


class VideoReader:
    """Frames of the first video stream of a file, decoded one at a time as RGB uint8 H×W×3 arrays.

    `start` skips that many frames (a keyframe seek for long skips in constant-frame-rate files, checked
    against the frames' timestamps, else decoding through them); `max_frames` stops after that many.
    Iterating again starts over at `start`. Use as a context manager, or call `close()`.
    """

    def __init__(self, path, start: int = 0, max_frames: int | None = None):
        if int(start) < 0 or (max_frames is not None and int(max_frames) < 0):
            raise TalkingPoseError(f"start and max_frames must not be negative; got {start} and {max_frames}.")
        self.path = Path(path)
        self.start = int(start)
        self.max_frames = None if max_frames is None else int(max_frames)
        self._container = _open_container(self.path, "r")
        if not self._container.streams.video:
            self._container.close()
            raise TalkingPoseError(f"{self.path} has no video stream. Use a video file.")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
        if not rate:
            self._container.close()
            raise TalkingPoseError(f"{self.path} does not say its frame rate; re-encode it with a fixed frame rate.")
        self.fps: Fraction = Fraction(rate)
        self.has_audio: bool = bool(self._container.streams.audio)
        self._used = False
        self._frame_count: int | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self._stream.codec_context.width, self._stream.codec_context.height

    @property
    def frame_count(self) -> int:
        """Frames in the file: the container's count when it has one (mp4 does); otherwise counted by decoding
        the file once, since an estimate from the duration is wrong when timestamps restart (spliced MPEG-TS)
        or the rate varies."""
        if self._frame_count is None:
            self._frame_count = int(self._stream.frames) or self._count_by_decoding()
        return self._frame_count

    def _count_by_decoding(self) -> int:
        with _open_container(self.path, "r") as container:  # its own container: iteration here is untouched
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            try:
                return sum(1 for _ in container.decode(stream))
            except _AV_ERRORS as exc:
                raise TalkingPoseError(f"Decoding {self.path} failed ({exc}); the file may be damaged.") from exc

    def irregular_timing(self) -> str | None:
        """A sentence when the frames are not evenly spaced at `fps` (a variable frame rate, or timestamps that
        restart), None when they are. Reads the packets' timestamps only, not the pictures."""
        with _open_container(self.path, "r") as container:
            stream = container.streams.video[0]
            times = sorted(float(p.pts * stream.time_base) for p in container.demux(stream) if p.pts is not None)
        if len(times) < 3:
            return None
        period = 1 / float(self.fps)
        drift = max(abs(t - times[0] - k * period) for k, t in enumerate(times))
        if drift <= period / 2:
            return None
        gaps = [b - a for a, b in zip(times, times[1:])]
        return (f"{self.path}'s frames are not evenly spaced in time (intervals from {min(gaps) * 1000:.0f} to "
                f"{max(gaps) * 1000:.0f} ms: a variable frame rate, or timestamps that restart). Its frames are used "
                f"in order at a constant {float(self.fps):.3f} fps, so the timing, and the audio, can be off by up to "
                f"{drift:.2f} s from the source; re-encode it at a constant frame rate to keep them in step.")

    @property
    def duration(self) -> float:
        return float(self.frame_count / self.fps)

    def __len__(self) -> int:
        """Frames this reader yields (after `start`, up to `max_frames`), from `frame_count`."""
        n = max(0, self.frame_count - self.start)
        return n if self.max_frames is None else min(n, self.max_frames)

    def _is_constant_rate(self) -> bool:
        stream = self._stream
        if not (stream.frames and stream.duration and stream.time_base):
            return False
        return abs(stream.duration * stream.time_base * self.fps - stream.frames) <= 1

    def _frame_index(self, frame) -> int | None:
        if frame.pts is None or not self._stream.time_base:
            return None
        origin = self._stream.start_time or 0
        return int(round((frame.pts - origin) * self._stream.time_base * self.fps))

    def _decode(self) -> Iterator:
        try:
            yield from self._container.decode(self._stream)
        except _AV_ERRORS as exc:
            raise TalkingPoseError(f"Decoding {self.path} failed ({exc}); the file may be damaged.") from exc

    def _rewind(self) -> None:
        self._container.seek(0, backward=True, any_frame=False)

    def _frames_from(self, start: int, rewind: bool) -> Iterator:
        """Decoded av.VideoFrame objects from index `start` on, without colour-converting skipped ones."""
        if start >= _SEEK_MIN_FRAMES and self._is_constant_rate():
            stream = self._stream
            if start >= stream.frames:
                return
            target = (stream.start_time or 0) + int(Fraction(start) / self.fps / stream.time_base)
            try:
                self._container.seek(target, stream=stream, backward=True, any_frame=False)
                sought = True
            except _AV_ERRORS:
                sought = False  # e.g. a file without an index: decode through instead
            if sought:
                frames = self._decode()
                for frame in frames:
                    index = self._frame_index(frame)
                    if index is None or index > start:
                        break  # timestamps we cannot trust: count frames from the beginning instead
                    if index == start:
                        yield frame
                        yield from frames
                        return
            rewind = rewind or sought
        if rewind:
            self._rewind()
        for index, frame in enumerate(self._decode()):
            if index >= start:
                yield frame

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.max_frames == 0:
            return
        frames = self._frames_from(self.start, rewind=self._used)
        self._used = True
        count = 0
        for frame in frames:
            yield frame.to_ndarray(format="rgb24")
            count += 1
            if self.max_frames is not None and count >= self.max_frames:
                return

    def close(self) -> None:
        self._container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _AudioTrack:
    """The audio of `source` carried into `output`: packets copied when mp4 takes the codec, else re-encoded to
    AAC; trimmed at packet (copy) or frame (re-encode) granularity to the video's end. `pump` is called as video
    is written, so the two streams are interleaved in the file rather than audio all at the end."""

    def __init__(self, output, source):
        self._source = _open_container(source, "r")
        self.present = bool(self._source.streams.audio)
        if not self.present:
            self._source.close()
            return
        self._in = self._source.streams.audio[0]
        self._copy = self._in.codec_context.name in _MP4_AUDIO_COPY
        if self._copy:
            adder = getattr(output, "add_stream_from_template", None)
            self._out = adder(self._in) if adder else output.add_stream(template=self._in)
        else:
            rate = self._in.codec_context.sample_rate or 48000
            self._out = output.add_stream("aac", rate=rate)
            self._out.layout = self._in.codec_context.layout.name if self._in.codec_context.layout else "stereo"
        self._output = output
        self._items = self._read_items(self._source.demux(self._in))
        self._pending = None  # packet or decoded frame read ahead but later than the last pump
        self._done = False

    def _read_items(self, packets):
        for packet in packets:
            if packet.dts is None and packet.pts is None:
                continue
            if self._copy:
                yield packet
            else:
                yield from packet.decode()

    def pump(self, until_seconds: float) -> None:
        if not self.present or self._done:
            return
        try:
            while True:
                item = self._pending if self._pending is not None else next(self._items, None)
                self._pending = None
                if item is None:
                    self._done = True
                    return
                start = float(item.pts * item.time_base) if item.pts is not None else 0.0
                if start >= until_seconds:
                    self._pending = item
                    return
                self._write(item)
        except _AV_ERRORS as exc:
            raise TalkingPoseError(f"Copying the audio of {self._source.name} failed ({exc}).") from exc

    def _write(self, item) -> None:
        if self._copy:
            item.stream = self._out
            self._output.mux(item)
        else:
            item.pts = None  # the encoder numbers samples itself; source timestamps may not start at zero
            self._output.mux(self._out.encode(item))

    def finish(self, end_seconds: float) -> None:
        if not self.present:
            return
        self.pump(end_seconds)
        if not self._copy:
            self._output.mux(self._out.encode(None))
        self._source.close()
        self.present = False


def _add_video_stream(container, fps: Fraction, size, codec: str | None, crf: int, preset: str, b_frames: bool):
    codec = codec or default_video_codec()
    options = {}
    if codec == "libx264":
        options = {"crf": str(crf), "preset": preset}
        if not b_frames:
            options["bf"] = "0"
    try:
        stream = container.add_stream(codec, rate=fps, options=options)
    except _AV_ERRORS as exc:
        raise TalkingPoseError(f"This PyAV build cannot encode video with {codec!r} ({exc}).") from exc
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    if codec != "libx264":
        # MPEG-4 part 2 has no constant-quality default; a generous bit rate keeps it near visually lossless.
        stream.codec_context.bit_rate = int(max(2_000_000, size[0] * size[1] * float(fps) * 0.3))
        if not b_frames:
            stream.codec_context.max_b_frames = 0
    stream.codec_context.time_base = 1 / fps
    return stream


def _checked_rgb(frame: np.ndarray, size) -> np.ndarray:
    """The frame as a contiguous RGB uint8 array of exactly `size` (one extra odd row/column is cropped)."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise TalkingPoseError(f"A frame to write must be an RGB uint8 array H×W×3; got {frame.dtype} {frame.shape}.")
    width, height = size
    if frame.shape[1] - width not in (0, 1) or frame.shape[0] - height not in (0, 1):
        raise TalkingPoseError(
            f"Every frame of a video must have the same size: expected {width}×{height}, "
            f"got {frame.shape[1]}×{frame.shape[0]}."
        )
    return np.ascontiguousarray(frame[:height, :width])


def _to_av_frame(frame: np.ndarray, size) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(_checked_rgb(frame, size), format="rgb24")


class VideoWriter:
    """An mp4 written one RGB uint8 frame at a time; `close()` (or leaving the `with` block) flushes the encoder
    and the audio.

    `size` is (width, height); odd sides are cropped to even (`self.size` is what is encoded). `audio_from`:
    a file whose first audio track is carried over, trimmed to the video's length; nothing happens when that
    file has no audio (see `has_audio`). `codec` None picks `default_video_codec()`; `crf`/`preset` are
    libx264's quality/speed settings.
    """

    def __init__(self, path, fps, size, audio_from=None, codec: str | None = None, crf: int = 18,
                 preset: str = "medium", b_frames: bool = True, faststart: bool = True):
        self.path = Path(path)
        self.fps = _fraction_fps(fps)
        self.size = even_size(size)
        self.frames_written = 0
        self._closed = False
        options = {"movflags": "+faststart"} if faststart else {}
        self._container = _open_container(self.path, "w", format="mp4", options=options)
        try:
            self._stream = _add_video_stream(self._container, self.fps, self.size, codec, crf, preset, b_frames)
            self._audio = _AudioTrack(self._container, audio_from) if audio_from is not None else None
        except BaseException:
            self._container.close()
            raise
        self.codec = self._stream.codec_context.name
        # False also when `audio_from` was given but has no audio track
        self.has_audio = self._audio is not None and self._audio.present

    def write(self, frame: np.ndarray) -> None:
        if self._closed:
            raise TalkingPoseError(f"The video {self.path} is already closed.")
        av_frame = _to_av_frame(frame, self.size)
        av_frame.pts = self.frames_written
        av_frame.time_base = self._stream.codec_context.time_base
        self._container.mux(self._stream.encode(av_frame))
        self.frames_written += 1
        if self._audio is not None:
            self._audio.pump(float(self.frames_written / self.fps))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._container.mux(self._stream.encode(None))
            if self._audio is not None:
                self._audio.finish(float(self.frames_written / self.fps))
        finally:
            self._container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

"""Streaming video input and output with PyAV, at constant memory whatever the video's length.

* `VideoReader` yields RGB uint8 frames (H×W×3) one at a time, can start at frame N (for resume) and stop
  after M frames.
* `VideoWriter` encodes RGB frames one at a time into an mp4 (H.264 via libx264 when PyAV's FFmpeg has it,
  MPEG-4 part 2 otherwise; yuv420p) and carries the audio track of another file (the driving video) over.
* `SegmentedVideoWriter` is the resumable variant used by the headless command: an mp4 cannot be appended
  to, so finished frames go into closed segment files in `<out>.partial/`, which survive a crash; at the end
  the segments are joined without re-encoding, and the audio added, into the final mp4.

Colour: frames are converted RGB→YUV and back by FFmpeg's swscale with its default (BT.601) matrix and the
colour space left unspecified, which is also what decoders assume for an untagged file, so colours round-trip.
"""
from __future__ import annotations

import json
import os
import shutil
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

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self._stream.codec_context.width, self._stream.codec_context.height

    @property
    def frame_count(self) -> int:
        """Frames in the file: the container's count when it has one (mp4 does), else estimated from the duration."""
        stream = self._stream
        if stream.frames:
            return int(stream.frames)
        if stream.duration and stream.time_base:
            return int(round(stream.duration * stream.time_base * self.fps))
        if self._container.duration:
            return int(round(Fraction(self._container.duration, av.time_base) * self.fps))
        return 0

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


def _to_av_frame(frame: np.ndarray, size) -> av.VideoFrame:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise TalkingPoseError(f"A frame to write must be an RGB uint8 array H×W×3; got {frame.dtype} {frame.shape}.")
    width, height = size
    if frame.shape[1] - width not in (0, 1) or frame.shape[0] - height not in (0, 1):
        raise TalkingPoseError(
            f"Every frame of a video must have the same size: expected {width}×{height}, "
            f"got {frame.shape[1]}×{frame.shape[0]}."
        )
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:height, :width]), format="rgb24")


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


class SegmentedVideoWriter:
    """A resumable mp4 writer: frames go into `<out>.partial/segment_NNNNN.mp4` files of `segment_frames`
    frames each; a segment is renamed into place only once it is completely written and closed, so after a
    crash every `segment_*.mp4` is whole. `finalize()` joins the segments without re-encoding (they are encoded
    without B-frames, so packets are in display order and can simply be renumbered) and adds the audio.

    `resume=True` keeps the segments already in `<out>.partial/` (they must have been written with the same
    fps, size and codec); `frames_written` then says from which frame the caller continues. `resume=False`
    discards any earlier partial output.

    `frames_written` counts every frame given to `write` since the start of the output (including resumed
    ones); `frames_committed` only those in closed segments, i.e. what survives a crash now.
    """

    def __init__(self, out_path, fps, size, segment_frames: int = 48, codec: str | None = None, crf: int = 18,
                 preset: str = "medium", resume: bool = False):
        if int(segment_frames) < 1:
            raise TalkingPoseError(f"segment_frames must be at least 1; got {segment_frames}.")
        self.out_path = Path(out_path)
        self.partial_dir = self.out_path.with_name(self.out_path.name + ".partial")
        self.fps = _fraction_fps(fps)
        self.size = even_size(size)
        self.segment_frames = int(segment_frames)
        self.codec = codec or default_video_codec()
        self._crf, self._preset = crf, preset
        self._segments: list[tuple[Path, int]] = []  # closed segments and their frame counts
        self._open = None  # (container, stream, frames in it, temporary path)
        self._meta = {"fps": str(self.fps), "size": list(self.size), "codec": self.codec}
        if resume:
            self.resume()
        else:
            self._start_fresh()

    @property
    def frames_committed(self) -> int:
        return sum(n for _, n in self._segments)

    @property
    def frames_written(self) -> int:
        return self.frames_committed + (self._open[2] if self._open else 0)

    def _start_fresh(self) -> None:
        if self.partial_dir.exists():
            shutil.rmtree(self.partial_dir)
        self.partial_dir.mkdir(parents=True)
        (self.partial_dir / "meta.json").write_text(json.dumps(self._meta))
        self._segments = []

    def resume(self) -> int:
        """Re-reads `<out>.partial/`: drops a segment left open by a crash and any unreadable segment (with
        every segment after it, since frames must stay contiguous). Returns `frames_written`."""
        if self._open is not None:
            raise TalkingPoseError("resume() is for a writer just opened on an existing partial output.")
        meta_path = self.partial_dir / "meta.json"
        if not meta_path.is_file():
            self._start_fresh()
            return 0
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            meta = None
        if meta != self._meta:
            raise TalkingPoseError(
                f"The unfinished output in {self.partial_dir} was written with other settings ({meta}) than now "
                f"({self._meta}). Use the same settings to resume, or start over without resuming."
            )
        for leftover in self.partial_dir.glob("*.tmp"):
            leftover.unlink()
        self._segments = []
        files = sorted(self.partial_dir.glob("segment_*.mp4"))
        for position, path in enumerate(files):
            frames = self._count_frames(path) if path.name == self._segment_name(position) else 0
            if frames <= 0:
                for bad in files[position:]:
                    bad.unlink()
                break
            self._segments.append((path, frames))
        return self.frames_written

    @staticmethod
    def _segment_name(index: int) -> str:
        return f"segment_{index:05d}.mp4"

    @staticmethod
    def _count_frames(path: Path) -> int:
        try:
            with av.open(str(path)) as container:
                return int(container.streams.video[0].frames) if container.streams.video else 0
        except _AV_ERRORS:
            return 0

    def write(self, frame: np.ndarray) -> None:
        if self._open is None:
            temporary = self.partial_dir / (self._segment_name(len(self._segments)) + ".tmp")
            container = _open_container(temporary, "w", format="mp4")
            stream = _add_video_stream(container, self.fps, self.size, self.codec, self._crf, self._preset, False)
            self._open = [container, stream, 0, temporary]
        container, stream, count, _ = self._open
        av_frame = _to_av_frame(frame, self.size)
        av_frame.pts = count
        av_frame.time_base = stream.codec_context.time_base
        container.mux(stream.encode(av_frame))
        self._open[2] = count + 1
        if self._open[2] >= self.segment_frames:
            self.close_segment()

    def close_segment(self) -> None:
        """Closes the open segment (if any) so its frames survive a crash; the next frame opens a new one."""
        if self._open is None:
            return
        container, stream, count, temporary = self._open
        self._open = None
        container.mux(stream.encode(None))
        container.close()
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        final = temporary.with_name(temporary.name[: -len(".tmp")])
        os.replace(temporary, final)
        self._segments.append((final, count))

    def close(self) -> None:
        """Closes the open segment without producing the final file; a later writer can resume."""
        self.close_segment()

    def finalize(self, audio_from=None, keep_segments: bool = False) -> Path:
        """Joins the segments (and the audio of `audio_from`, trimmed to the video) into `out_path`."""
        self.close_segment()
        total = self.frames_committed
        if total == 0:
            raise TalkingPoseError(f"No frames were written for {self.out_path}; there is nothing to finalize.")
        temporary = self.out_path.with_name(self.out_path.name + ".tmp")
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        if not self._remux(temporary, audio_from):
            self._reencode(temporary, audio_from)
        os.replace(temporary, self.out_path)
        if not keep_segments:
            shutil.rmtree(self.partial_dir, ignore_errors=True)
        return self.out_path

    def _remux(self, target: Path, audio_from) -> bool:
        """Joins the segments' packets as they are; False when they are not joinable (different encoder
        headers, e.g. segments from another FFmpeg build), so the caller re-encodes instead."""
        inputs = [av.open(str(path)) for path, _ in self._segments]
        try:
            first = inputs[0].streams.video[0]
            headers = {bytes(c.streams.video[0].codec_context.extradata or b"") for c in inputs}
            if len(headers) != 1:
                return False
            output = _open_container(target, "w", format="mp4", options={"movflags": "+faststart"})
            try:
                adder = getattr(output, "add_stream_from_template", None)
                out = adder(first) if adder else output.add_stream(template=first)
                out.time_base = first.time_base
                audio = _AudioTrack(output, audio_from) if audio_from is not None else None
                step = Fraction(1) / self.fps / first.time_base  # one frame in segment timestamp ticks
                index = 0
                for container in inputs:
                    stream = container.streams.video[0]
                    for packet in container.demux(stream):
                        if packet.size == 0:
                            continue
                        packet.stream = out
                        packet.pts = packet.dts = int(round(index * step))
                        packet.duration = int(round(step))
                        output.mux(packet)
                        index += 1
                        if audio is not None:
                            audio.pump(float(index / self.fps))
                if audio is not None:
                    audio.finish(float(index / self.fps))
            finally:
                output.close()
            return True
        finally:
            for container in inputs:
                container.close()

    def _reencode(self, target: Path, audio_from) -> None:
        with VideoWriter(target, self.fps, self.size, audio_from=audio_from, codec=self.codec, crf=self._crf,
                         preset=self._preset) as writer:
            for path, _ in self._segments:
                with VideoReader(path) as reader:
                    for frame in reader:
                        writer.write(frame)

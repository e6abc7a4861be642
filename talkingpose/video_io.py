"""Streaming video input and output with PyAV, at constant memory whatever the video's length.

* `VideoReader` yields RGB uint8 frames (H×W×3) one at a time, can start at frame N (for resume) and stop
  after M frames.
* `VideoWriter` encodes RGB frames one at a time into an mp4 (H.264 via libx264 when PyAV's FFmpeg has it,
  MPEG-4 part 2 otherwise; yuv420p) and carries the audio track of another file (the driving video) over.
* `SegmentedVideoWriter` is the resumable variant used by the headless command: an mp4 cannot be appended
  to, so every finished frame is kept in `<out>.partial/` at once (raw, then in segments of fixed frame ranges),
  which survives a crash; at the end the segments are joined without re-encoding, and the audio added.

Colour: frames are converted RGB->YUV and back by FFmpeg's swscale with its default (BT.601) matrix and the
colour space left unspecified, which is also what decoders assume for an untagged file, so colours round-trip.
"""
from __future__ import annotations

import json
import logging
import os
import re
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from . import durable
from .errors import TalkingPoseError

log = logging.getLogger("TalkingPose")

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


class SegmentedVideoWriter:
    """A resumable mp4 writer in `<out>.partial/`: every frame is kept the moment `write` returns, and an
    interrupted render continued from there gives the same file, byte for byte, as an uninterrupted one.

    * Each frame is saved losslessly (`frame_NNNNNNN.rgb`, raw RGB, written under a temporary name and renamed) as soon as
      it arrives, so a kill loses at most the frame being made.
    * Every `segment_frames` frames (frames k·n … (k+1)·n-1, whatever the run that made them) are encoded into
      `segment_KKKKK.mp4`, when the frame after them arrives, and their raw files removed. The boundaries do not depend on where a run stopped and
      the encoder is deterministic, so the segments, and the joined file, do not either.
    * `finalize()` encodes the remaining frames, joins everything without re-encoding (segments have no
      B-frames, so packets are in display order and can simply be renumbered), adds the audio and renames the
      result into place. If it fails (a full disk), nothing in the folder is touched: call it again.

    The folder holds a marker file with the writer's settings. A folder without it was not made by the pack and
    is never changed or deleted; a folder with it is, but only the files the pack writes there.

    `resume=True` continues the frames in the folder (written with the same settings); `frames_written` says from
    which frame the caller continues, and `truncate(n)` drops kept frames from n on (only those not yet in a
    segment). `resume=False` deletes the pack's files in the folder and starts empty.
    """

    MARKER = "talkingpose-partial.json"
    # The files the pack writes in a partial folder: segments, raw frames, the headless job's sampler states,
    # the marker and temporary files (`.NAME.PID.RANDOM.tmp`). Only these are ever deleted.
    OWN_FILES = re.compile(r"segment_\d{5}\.mp4|frame_\d{7}\.rgb|state-\d{7}\.safetensors|talkingpose-partial\.json"
                           r"|\..+\.\d+\.[^.]+\.tmp")

    def __init__(self, out_path, fps, size, segment_frames: int = 48, codec: str | None = None, crf: int = 18,
                 preset: str = "medium", resume: bool = False):
        if int(segment_frames) < 1:
            raise TalkingPoseError(f"segment_frames must be at least 1; got {segment_frames}.")
        self.out_path = Path(out_path)
        self.partial_dir = partial_dir(self.out_path)
        self.fps = _fraction_fps(fps)
        self.size = even_size(size)
        self.segment_frames = int(segment_frames)
        self.codec = codec or default_video_codec()
        self._crf, self._preset = crf, preset
        self._segments = 0  # whole segments in the folder
        self._pending = 0  # raw frames after them
        self._meta = {"format": "talkingpose-partial/2", "fps": str(self.fps), "size": list(self.size),
                      "codec": self.codec, "segment_frames": self.segment_frames}
        if resume:
            self.resume()
        else:
            self._start_fresh()

    @property
    def frames_written(self) -> int:
        """Frames kept in the folder: all of them survive a crash."""
        return self._segments * self.segment_frames + self._pending

    @property
    def frames_encoded(self) -> int:
        """Frames already in segments (the first frame `truncate` can go back to)."""
        return self._segments * self.segment_frames

    # ------------------------------------------------------------------------------------------- the folder
    @classmethod
    def is_own_folder(cls, folder: Path) -> bool:
        return (Path(folder) / cls.MARKER).is_file()

    @classmethod
    def kept_frames(cls, folder: Path) -> int:
        """How many frames a partial folder holds, from its file names (quick; `resume` checks them)."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / cls.MARKER).read_text())
            per_segment = int(meta["segment_frames"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0
        names = os.listdir(folder)
        return (sum(1 for n in names if re.fullmatch(r"segment_\d{5}\.mp4", n)) * per_segment
                + sum(1 for n in names if re.fullmatch(r"frame_\d{7}\.rgb", n)))

    @classmethod
    def remove_folder(cls, folder: Path) -> bool:
        """Deletes the pack's files in a partial folder and the folder once empty; refuses a folder the pack did
        not make. Returns False when files of someone else's kept the folder."""
        folder = Path(folder)
        if not folder.exists():
            return True
        if not cls.is_own_folder(folder):
            raise TalkingPoseError(
                f"{folder} exists but was not made by TalkingPose (it has no {cls.MARKER}); it is left untouched. "
                "Move it away, or choose another output file name."
            )
        names = sorted(os.listdir(folder), key=lambda n: n == cls.MARKER)  # the marker last
        for name in names:
            if cls.OWN_FILES.fullmatch(name):
                (folder / name).unlink(missing_ok=True)
        try:
            folder.rmdir()
            return True
        except OSError:
            return False

    def _start_fresh(self) -> None:
        if self.partial_dir.exists() and (self.is_own_folder(self.partial_dir) or any(self.partial_dir.iterdir())):
            self.remove_folder(self.partial_dir)  # refuses a folder of someone else's
        try:
            self.partial_dir.mkdir(parents=True, exist_ok=True)
            durable.write_bytes(self.partial_dir / self.MARKER, json.dumps(self._meta).encode())
        except OSError as exc:
            raise TalkingPoseError(
                f"Could not create {self.partial_dir} ({exc.strerror or exc}). Check that the output folder is writable "
                "and has free space."
            ) from exc
        self._segments = self._pending = 0

    def resume(self) -> int:
        """Re-reads the folder: keeps the whole segments and the readable raw frames after them, in order, and
        drops anything after a damaged one (frames must stay contiguous). Returns `frames_written`."""
        folder = self.partial_dir
        if not folder.exists() or (not self.is_own_folder(folder) and not any(folder.iterdir())):
            self._start_fresh()
            return 0
        if not self.is_own_folder(folder):
            self.remove_folder(folder)  # refuses with a sentence
        try:
            meta = json.loads((folder / self.MARKER).read_text())
        except ValueError:
            meta = None
        if meta != self._meta:
            raise TalkingPoseError(
                f"The unfinished output in {folder} was written with other settings ({meta}) than now "
                f"({self._meta}). Use the same settings to resume, or start over without resuming."
            )
        durable.remove_stale_temporaries_in(folder)
        segments = 0
        while self._count_frames(folder / self._segment_name(segments)) == self.segment_frames:
            segments += 1
        pending = 0
        # A full segment of raw frames (a crash before its encoding) stays raw until the caller has chosen where
        # to continue (`truncate`); the next `write` or `finalize` encodes it.
        while pending < self.segment_frames and self._read_frame(segments * self.segment_frames + pending) is not None:
            pending += 1
        self._segments, self._pending = segments, pending
        self._remove_beyond()
        return self.frames_written

    def _remove_beyond(self) -> None:
        """Deletes segment and raw-frame files that are not part of the kept frames."""
        first_pending = self._segments * self.segment_frames
        for name in os.listdir(self.partial_dir):
            if re.fullmatch(r"segment_\d{5}\.mp4", name) and int(name[8:13]) >= self._segments:
                (self.partial_dir / name).unlink(missing_ok=True)
            elif re.fullmatch(r"frame_\d{7}\.rgb", name):
                index = int(name[6:13])
                if not first_pending <= index < self.frames_written:
                    (self.partial_dir / name).unlink(missing_ok=True)

    def truncate(self, frames: int) -> None:
        """Keeps only the first `frames` frames (they must include every whole segment)."""
        if not self._segments * self.segment_frames <= frames <= self.frames_written:
            raise TalkingPoseError(
                f"Cannot go back to frame {frames} in {self.partial_dir}: frames "
                f"{self._segments * self.segment_frames}-{self.frames_written} can be, earlier ones are encoded."
            )
        self._pending = frames - self._segments * self.segment_frames
        self._remove_beyond()

    @staticmethod
    def _segment_name(index: int) -> str:
        return f"segment_{index:05d}.mp4"

    def _frame_path(self, index: int) -> Path:
        return self.partial_dir / f"frame_{index:07d}.rgb"

    def _read_frame(self, index: int) -> np.ndarray | None:
        """A kept raw frame (RGB bytes, row after row), or None when it is missing or incomplete."""
        width, height = self.size
        try:
            data = self._frame_path(index).read_bytes()
        except OSError:
            return None
        if len(data) != width * height * 3:
            return None
        return np.frombuffer(data, np.uint8).reshape(height, width, 3)

    @staticmethod
    def _count_frames(path: Path) -> int:
        if not path.is_file():
            return 0
        try:
            with av.open(str(path)) as container:
                return int(container.streams.video[0].frames) if container.streams.video else 0
        except _AV_ERRORS:
            return 0

    # ------------------------------------------------------------------------------------------- writing
    def _kept_message(self, what: str, exc: BaseException) -> TalkingPoseError:
        reason = getattr(exc, "strerror", None) or str(exc)
        return TalkingPoseError(
            f"Could not {what} in {self.partial_dir} ({reason}). The {self.frames_written} frames made before are kept "
            "there; free some disk space (or fix the folder) and continue the render (the headless command: the same "
            "command with --resume)."
        )

    def write(self, frame: np.ndarray) -> None:
        """Keeps one more frame (durably, before returning); first encodes the previous segment if it is full."""
        frame = _checked_rgb(frame, self.size)
        if self._pending == self.segment_frames:
            # A full segment is encoded only now, when the next frame comes: the caller has kept what belongs to
            # the last frame (the sampler state) by then, so raw frames go only once nothing refers to them.
            self._encode_segment()
        index = self.frames_written
        try:
            with durable.replacing(self._frame_path(index)) as temporary:
                with open(temporary, "wb") as handle:
                    handle.write(frame.tobytes())
        except OSError as exc:
            raise self._kept_message(f"save frame {index}", exc) from exc
        self._pending += 1

    def _encode(self, target: Path, first: int, count: int) -> None:
        container = _open_container(target, "w", format="mp4")
        try:
            stream = _add_video_stream(container, self.fps, self.size, self.codec, self._crf, self._preset, False)
            for position in range(count):
                frame = self._read_frame(first + position)
                if frame is None:
                    raise TalkingPoseError(f"Frame {first + position} in {self.partial_dir} has gone or is damaged.")
                av_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
                av_frame.pts = position
                av_frame.time_base = stream.codec_context.time_base
                container.mux(stream.encode(av_frame))
            container.mux(stream.encode(None))
        finally:
            container.close()

    def _encode_segment(self) -> None:
        """Encodes the full segment of raw frames; on failure the raw frames stay and it is tried again later."""
        first = self._segments * self.segment_frames
        target = self.partial_dir / self._segment_name(self._segments)
        try:
            with durable.replacing(target) as temporary:
                self._encode(temporary, first, self.segment_frames)
        except (OSError, av.error.FFmpegError) as exc:
            raise self._kept_message(f"encode frames {first}-{first + self.segment_frames - 1}", exc) from exc
        self._segments += 1
        self._pending = 0
        for index in range(first, first + self.segment_frames):
            self._frame_path(index).unlink(missing_ok=True)

    def finalize(self, audio_from=None) -> Path:
        """Joins the segments and the remaining frames (and the audio of `audio_from`, trimmed to the video) into
        `out_path`, then deletes the folder. Can be called again after a failure; nothing is lost by one."""
        total = self.frames_written
        if total == 0:
            raise TalkingPoseError(f"No frames were written for {self.out_path}; there is nothing to finalize.")
        if self._pending == self.segment_frames:
            self._encode_segment()
        files = [self.partial_dir / self._segment_name(i) for i in range(self._segments)]
        tail = None
        try:
            self.out_path.parent.mkdir(parents=True, exist_ok=True)
            if self._pending:
                tail = durable.temporary_sibling(self.partial_dir / "tail.mp4")
                self._encode(tail, self._segments * self.segment_frames, self._pending)
                files.append(tail)
            with durable.replacing(self.out_path) as temporary:
                if not self._remux(files, temporary, audio_from):
                    self._reencode(files, temporary, audio_from)
        except (OSError, av.error.FFmpegError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise TalkingPoseError(
                f"Could not write the final video {self.out_path} ({reason}). All {total} frames are kept in "
                f"{self.partial_dir}: free some disk space (or fix the folder) and finalize again (the headless "
                "command: the same command with --resume only joins them)."
            ) from exc
        finally:
            if tail is not None:
                tail.unlink(missing_ok=True)
        if not self.remove_folder(self.partial_dir):
            log.warning("Left %s in place: it holds files TalkingPose did not write.", self.partial_dir)
        return self.out_path

    def _remux(self, files: list[Path], target: Path, audio_from) -> bool:
        """Joins the files' packets as they are; False when they are not joinable (different encoder headers,
        e.g. segments from another FFmpeg build), so the caller re-encodes instead."""
        inputs = [av.open(str(path)) for path in files]
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

    def _reencode(self, files: list[Path], target: Path, audio_from) -> None:
        with VideoWriter(target, self.fps, self.size, audio_from=audio_from, codec=self.codec, crf=self._crf,
                         preset=self._preset) as writer:
            for path in files:
                with VideoReader(path) as reader:
                    for frame in reader:
                        writer.write(frame)


def partial_dir(out_path) -> Path:
    """Where the frames of an unfinished `out_path` are kept."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".partial")

"""The resumable mp4 writer of the headless command (`SegmentedVideoWriter`): an mp4 cannot be appended to, so
every finished frame is kept in `<out>.partial/` at once (raw, then in segments of fixed frame ranges), which
survives a crash; at the end the segments are joined without re-encoding, and the audio added. Encoding and
reading go through `video_io`.
"""
from __future__ import annotations

import json
import logging
import os
import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from . import durable
from .errors import TalkingPoseError
from .video_io import (_AV_ERRORS, VideoReader, VideoWriter, _add_video_stream, _AudioTrack, _checked_rgb,
                       _fraction_fps, _open_container, default_video_codec, even_size)

log = logging.getLogger("TalkingPose")

# The headless job's sampler state after frame n-1, kept in the partial folder beside the frames (`render_output`).
STATE_NAME = re.compile(r"state-(\d{7})\.safetensors")


def state_file_name(next_frame: int) -> str:
    """The name `STATE_NAME` matches for the state whose next frame is `next_frame`."""
    return f"state-{next_frame:07d}.safetensors"


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
    OWN_FILES = re.compile(rf"segment_\d{{5}}\.mp4|frame_\d{{7}}\.rgb|{STATE_NAME.pattern}|talkingpose-partial\.json"
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

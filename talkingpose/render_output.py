"""The headless job's output and how a render survives a crash.

* `check_output` runs before anything is computed: the output must be a file name in a writable folder, and an
  interrupted render's kept frames, or an existing output, are never deleted or replaced without `--overwrite`.
* `commit_frame` keeps each finished frame and then the sampler state after it, each written durably (see
  `durable`): a state never runs ahead of the frames kept, so whatever moment a crash, a kill or a full disk
  strikes, the folder holds frames 0…n-1 and a state for some n' <= n.
* `resume_point` picks the newest usable state and drops frames after it (they are made again, identically).
* `finalize` joins the frames into the output; after a failure it is simply run again.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from . import durable, file_names
from .errors import RunMismatch, TalkingPoseError
from .sampler import SamplerState
from .segmented_writer import STATE_NAME, SegmentedVideoWriter, partial_dir, state_file_name

log = logging.getLogger("TalkingPose")

# The newest state belongs to the newest kept frame; one more is kept in case the disk damages the newest.
KEEP_STATES = 2


def check_output(out: Path, resume: bool = False, overwrite: bool = False) -> None:
    """Refuses an output the job could not write, or whose kept frames it would delete, before any work."""
    out = Path(out)
    if resume and overwrite:
        raise TalkingPoseError("--resume continues the kept frames and --overwrite deletes them: give one of the two.")
    file_names.check_path(out, "--out")
    file_names.check_length(out, file_names.RENDER_EXTRA, "output", "--out (its folder or its name)")
    if out.is_dir():
        raise TalkingPoseError(f"--out {out} is a folder; give the video's file name, e.g. {out / 'animated.mp4'}.")
    folder = out.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        durable.temporary_sibling(out).unlink()
    except OSError as exc:
        raise TalkingPoseError(
            f"Cannot write the output {out}: {folder} is not a writable folder ({exc.strerror or exc}). "
            "Choose another place for --out."
        ) from exc
    partial = partial_dir(out)
    if not partial.exists():
        _refuse_replacing(out, overwrite)
        return
    if not partial.is_dir() or (not SegmentedVideoWriter.is_own_folder(partial) and any(partial.iterdir())):
        raise TalkingPoseError(
            f"{partial} exists but was not made by TalkingPose; it is left untouched. Move it away, or choose "
            "another --out."
        )
    kept = SegmentedVideoWriter.kept_frames(partial)
    if kept and not resume and not overwrite:
        raise TalkingPoseError(
            f"{partial} holds {kept} finished frames of an interrupted render of {out}. Continue it with the same "
            "command plus --resume, or start over with --overwrite (which deletes them)."
        )
    if not kept:
        _refuse_replacing(out, overwrite)


def _refuse_replacing(out: Path, overwrite: bool) -> None:
    # An interrupted render's kept frames are the permission its first run had; otherwise an existing output
    # (or a link under its name) is replaced only when asked.
    if os.path.lexists(out) and not overwrite:
        raise TalkingPoseError(f"{out} already exists; choose another --out, or add --overwrite to replace it.")


def _states(folder: Path) -> list[tuple[int, Path]]:
    found = []
    for name in os.listdir(folder):
        match = STATE_NAME.fullmatch(name)
        if match:
            found.append((int(match.group(1)), folder / name))
    return sorted(found, reverse=True)


def _save_state(folder: Path, state: SamplerState, job_settings: dict) -> None:
    state.extra = dict(job_settings)
    state.save(folder / state_file_name(state.next_frame))
    for _, old in _states(folder)[KEEP_STATES:]:
        old.unlink(missing_ok=True)


def commit_frame(writer: SegmentedVideoWriter, frame, state: SamplerState, job_settings: dict) -> None:
    """Keeps `frame` (index `state.next_frame - 1`) and then `state`; both are on the disk when this returns."""
    writer.write(frame)
    try:
        _save_state(writer.partial_dir, state, job_settings)
    except TalkingPoseError as exc:
        cause = exc.__cause__
        reason = getattr(cause, "strerror", None) or str(cause or exc)
        raise TalkingPoseError(
            f"Could not save the sampler state after frame {state.next_frame - 1} in {writer.partial_dir} ({reason}). "
            f"The frames made so far are kept there; free some disk space and run the same command with --resume."
        ) from exc


def _upgraded_record(extra: dict) -> dict:
    """A run's recorded settings in today's names: runs recorded before the pose option had one name kept it as
    `retarget` with the values align/full, and stay resumable with today's `--alignment`."""
    from .pose.track import upgrade_mode

    if "retarget" not in extra or "alignment" in extra:
        return extra
    record = {k: v for k, v in extra.items() if k != "retarget"}
    record["alignment"] = upgrade_mode(extra["retarget"])
    return record


def resume_point(writer: SegmentedVideoWriter, job_settings: dict) -> SamplerState | None:
    """The newest state that fits the kept frames (and is intact); frames after it are dropped. None: start at
    frame 0."""
    made = writer.frames_written
    if made == 0:
        return None
    encoded = writer.frames_encoded
    for frames, path in _states(writer.partial_dir):
        if not encoded <= frames <= made:
            continue
        try:
            state = SamplerState.load(path)
        except TalkingPoseError as exc:
            log.warning("Not resuming from %s: %s", path.name, exc)
            continue
        recorded = _upgraded_record(state.extra)
        differs = [f"{k}: {recorded.get(k)!r} before, {v!r} now" for k, v in job_settings.items()
                   if recorded.get(k) != v]
        if differs:
            raise RunMismatch("Cannot resume: the run differs from the interrupted one (" + "; ".join(differs)
                                   + "). Use the same options, or start over with --overwrite.")
        if state.next_frame != frames:
            log.warning("Not resuming from %s: it holds frame %d.", path.name, state.next_frame)
            continue
        if frames < made:
            log.info("Frames %d-%d were kept without their sampler state; they are made again.", frames, made - 1)
        writer.truncate(frames)
        return state
    if encoded == 0:
        log.warning("%s holds %d frames but no usable sampler state; starting again from frame 0.", writer.partial_dir, made)
        writer.truncate(0)
        return None
    raise TalkingPoseError(
        f"{writer.partial_dir} holds {made} finished frames but no usable sampler state for frame {encoded} or later, "
        "so it cannot be continued exactly. Start over with --overwrite (which deletes those frames)."
    )

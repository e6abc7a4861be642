"""The batch manifest: one job a row, as CSV (with a header) or JSON Lines (one object a line).

Columns: `out` (the output's name relative to the output folder), `driving`, `poses` (its DWPose render
video) and/or `keypoints` (a keypoint track JSON) as `animate` takes them, optional `source` (frame 0 of the
driving video when empty) and optional per-job `seed`, `beta`, `frames`, `fps` (a keypoint track without a
driving video: 25 when empty). Relative paths are taken relative to the manifest's folder. Every problem of a row — an
unknown column, a missing or unreadable file, a bad number, an `out` name used twice (names that differ only in
case count as one: they are one file on Windows and macOS), a name Windows cannot hold — becomes that row's
error and the other rows go on; only a manifest that cannot be read at all stops everything.
"""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from .. import file_names
from ..errors import TalkingPoseError

COLUMNS = ("out", "source", "driving", "poses", "keypoints", "seed", "beta", "frames", "fps")
_PATH_COLUMNS = ("source", "driving", "poses", "keypoints")


@dataclass(frozen=True)
class RenderOptions:
    """What all jobs of a batch share (they are rendered together through one batched sampler)."""

    width: int = 512
    height: int = 512
    steps: int = 30
    cfg: float = 3.5
    seed: int = 42  # default of a row without its own seed
    beta: float = 0.05  # default of a row without its own beta
    fit: str = "stretch"
    models_root: str | None = None
    model_name: str | None = None
    random_weights: str | None = None
    device: str = "auto"
    precision: str = "auto"
    segment_frames: int = 16  # animate.SEGMENT_FRAMES (not imported: this module stays free of torch)
    weights_fp8: bool = False  # the UNets' weights stored in fp8: changes the frames (opt-in)

    def output_record(self) -> dict:
        """The options that change the frames made (device and segment size do not change what a job is)."""
        record = asdict(self)
        for name in ("seed", "beta", "device", "segment_frames"):
            record.pop(name)
        if not self.weights_fp8:  # absent, as in the records of batches run before the option existed
            record.pop("weights_fp8")
        return record


@dataclass(frozen=True)
class JobSpec:
    """One valid row: absolute input paths, its settings and the number of frames it will render."""

    line: int
    out: str  # relative to the output folder, '/'-separated
    driving: str | None
    poses: str | None
    source: str | None
    keypoints: str | None
    seed: int
    beta: float
    frames: int | None  # as asked in the row
    fps: float | None  # as asked in the row
    total: int  # frames it renders (the inputs' length, capped by `frames`)

    def record(self, options: RenderOptions) -> dict:
        """What the job's output depends on: a rerun skips the job when its finished record equals this."""
        return {"driving": self.driving, "poses": self.poses, "source": self.source, "keypoints": self.keypoints,
                "seed": self.seed, "beta": self.beta, "frames": self.total, "fps": self.fps, **options.output_record()}


@dataclass(frozen=True)
class RowError:
    line: int
    out: str
    message: str


def animate_job(spec: JobSpec, options: RenderOptions, out_dir: Path, resume: bool = True):
    """The `animate` job of a row (the batch renders each row exactly as `animate` would)."""
    from ..animate import AnimateJob
    from ..sampler import SamplerSettings

    path = lambda value: None if value is None else Path(value)  # noqa: E731
    return AnimateJob(
        out=Path(out_dir) / spec.out, driving=path(spec.driving), poses=path(spec.poses), source=path(spec.source),
        keypoints=path(spec.keypoints), width=options.width, height=options.height, frames=spec.frames,
        settings=SamplerSettings(steps=options.steps, cfg=options.cfg, beta=spec.beta, seed=spec.seed),
        models_root=path(options.models_root), model_name=options.model_name, random_weights=options.random_weights,
        resume=resume, device=options.device, precision=options.precision, fit=options.fit, fps=spec.fps,
        segment_frames=options.segment_frames, weights_fp8=options.weights_fp8,
    )


def read_rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, {column: text or value}) for each non-empty row; JSON Lines rows that are not objects come
    back as {"__error__": message}."""
    path = Path(path)
    if not path.is_file():
        raise TalkingPoseError(f"The job list {path} does not exist. Give a CSV or JSON Lines file, one job a row.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise TalkingPoseError(f"The job list {path} cannot be read as UTF-8 text ({exc}).") from None
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json") or text.lstrip().startswith("{"):
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                rows.append((number, {"__error__": f"not valid JSON ({exc.msg} at column {exc.colno})"}))
                continue
            rows.append((number, row if isinstance(row, dict) else {"__error__": "a JSON Lines row must be an object {...}"}))
        return rows
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames:
        raise TalkingPoseError(f"The job list {path} is empty: it needs a header line (e.g. out,driving,poses) and a row per job.")
    rows = []
    for row in reader:
        extra = row.pop(None, None)
        cleaned = {(k or "").strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
        if extra and any(v.strip() for v in extra):
            cleaned["__error__"] = f"{len(extra)} more value(s) than the header has columns"
        if any(v not in (None, "") for v in cleaned.values()):
            rows.append((reader.line_num, cleaned))
    return rows


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _number(value, kind, name: str, low, high, default):
    """A row's number, read the same way from CSV text and from JSON values: a whole number is written with digits
    only (JSON 1e9 or 3.0 is refused as the CSV text "1e9" is), true/false are not numbers, and every number is
    finite."""
    if _blank(value):
        return default
    try:
        if isinstance(value, bool) or (kind is int and isinstance(value, float)):
            raise ValueError
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise TalkingPoseError(f"{name} {value!r} is not a {'whole number' if kind is int else 'number'}"
                               + (" (write it with digits only)" if kind is int and isinstance(value, float) else "")) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise TalkingPoseError(f"{name} {value!r} is not a finite number")
    if not (low <= number <= high):
        raise TalkingPoseError(f"{name} {number} is out of range ({low} to {high})")
    return number


def _out_name(value) -> str:
    if _blank(value):
        raise TalkingPoseError("no `out` name (the output's file name, relative to the output folder)")
    name = PurePosixPath(str(value).strip().replace("\\", "/"))
    if name.is_absolute() or ".." in name.parts or name.name in ("", "."):
        raise TalkingPoseError(f"out {value!r} must be a file name inside the output folder (no absolute path, no '..')")
    if name.suffix.lower() != ".mp4":
        raise TalkingPoseError(f"out {value!r} must end in .mp4")
    # A job list travels between machines: a name only Linux can hold is refused on every one.
    file_names.check_relative_name(name.as_posix(), "output name")
    return name.as_posix()


def parse_row(line: int, row: dict, base: Path, options: RenderOptions) -> JobSpec:
    """One row -> its JobSpec; a TalkingPoseError names what is wrong with it."""
    from ..animate import check_inputs

    if "__error__" in row:
        raise TalkingPoseError(row["__error__"])
    unknown = sorted(k for k, v in row.items() if k not in COLUMNS and not _blank(v))
    if unknown:
        raise TalkingPoseError(f"unknown column(s) {', '.join(unknown)}; the columns are {', '.join(COLUMNS)}")
    out = _out_name(row.get("out"))
    paths = {}
    for name in _PATH_COLUMNS:
        value = row.get(name)
        if _blank(value):
            paths[name] = None
        else:
            path = Path(str(value).strip()).expanduser()
            paths[name] = str(path if path.is_absolute() else (base / path).resolve())
    if paths["driving"] is None and paths["poses"] is None and paths["keypoints"] is None:
        raise TalkingPoseError("give `driving` (a video), `poses` (its DWPose render video) or `keypoints` (a track)")
    seed = _number(row.get("seed"), int, "seed", 0, 2**64 - 1, options.seed)
    beta = _number(row.get("beta"), float, "beta", 0.0, 1.0, options.beta)
    frames = _number(row.get("frames"), int, "frames", 1, 10**9, None)
    fps = _number(row.get("fps"), float, "fps", 0.001, 1000.0, None)
    spec = JobSpec(line, out, paths["driving"], paths["poses"], paths["source"], paths["keypoints"], seed, beta, frames,
                   fps, 0)
    _, total, _ = check_inputs(animate_job(spec, options, Path(".")))  # existence, readability, length
    return JobSpec(**{**asdict(spec), "total": total})


def _claim(out: str, label: str, line: int, owners: dict, folders: dict) -> None:
    """Records `out` as line `line`'s; refuses a name another row has, or one that is another row's folder or has
    another row's output as its folder (`n.mp4` and `n.mp4/i.mp4`)."""
    key = PurePosixPath(out.casefold())  # one file on case-insensitive file systems
    if key in owners:
        raise TalkingPoseError(f"out {label!r} is already the output of line {owners[key]}; give each job its own name")
    if key in folders:
        raise TalkingPoseError(f"out {label!r} is a folder of the output of line {folders[key]}; give each job a "
                               "name that is not another job's folder")
    for folder in key.parents:
        if folder in owners:
            raise TalkingPoseError(f"out {label!r} would be inside the output of line {owners[folder]}; give each "
                                   "job a name that is not inside another job's output")
    owners[key] = line
    for folder in key.parents:
        folders.setdefault(folder, line)


def load_manifest(path: Path, options: RenderOptions, progress=None) -> tuple[list[JobSpec], list[RowError]]:
    """The valid jobs and the rows' errors, in manifest order. Of rows with the same `out`, the first keeps it.
    `progress(rows checked, rows)` is called after each row (checking a row opens its files)."""
    path = Path(path)
    specs, errors, owners, folders = [], [], {}, {}
    rows = read_rows(path)
    for done, (line, row) in enumerate(rows, 1):
        label = str(row.get("out") or "").strip()
        try:
            if "__error__" not in row:
                _claim(_out_name(row.get("out")), label, line, owners, folders)
            specs.append(parse_row(line, row, path.parent.resolve(), options))
        except TalkingPoseError as exc:
            errors.append(RowError(line, label, f"line {line}: {exc}"))
        if progress is not None:
            progress(done, len(rows))
    if not specs and not errors:
        raise TalkingPoseError(f"The job list {path} has no jobs.")
    return specs, errors

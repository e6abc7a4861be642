"""Is the pack ready for the Comfy Registry?

    python tools/publish_check.py --comfy PATH/TO/comfy            # what CI runs on every change
    python tools/publish_check.py --comfy PATH/TO/comfy --release  # before `comfy node publish`

Checks pyproject.toml's registry metadata (node id, version, licence file, Repository URL, an icon that exists in
this repository, is square and at most 400 px, and is addressed from the same repository, PublisherId,
requires-comfyui), runs `comfy node validate` (comfy-cli, from PyPI) and requires it to pass without a warning,
and packs the archive with `comfy node pack` to check that it holds what ComfyUI loads and none of what
.comfyignore leaves out. With --release, a placeholder left in pyproject.toml (the marker below) is an error too:
publishing is the one step where the real repository address must be known. Exits 1 with one sentence per
problem. Standard library only; comfy-cli runs as its own program.
"""
from __future__ import annotations

import argparse
import re
import struct
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = "CHANGE-ME"
ICON_MAX_PX = 400  # the registry's limit for an icon (square)
# What ComfyUI needs from the archive, and what .comfyignore must keep out of it.
REQUIRED_IN_ARCHIVE = ["__init__.py", "nodes/__init__.py", "talkingpose/__init__.py", "requirements.txt",
                       "install.py", "pyproject.toml", "LICENSE", "README.md", "web/talkingpose.js"]
REQUIRED_FOLDERS_IN_ARCHIVE = ["example_workflows/", "web/docs/"]
LEFT_OUT_OF_ARCHIVE = ["tests/", "benchmarks/", "docs/", "tools/", ".ci/"]
GITHUB = re.compile(r"^https://github\.com/(?P<owner>[A-Za-z0-9-]+)/(?P<repo>[A-Za-z0-9._-]+)$")
RAW = re.compile(r"^https://raw\.githubusercontent\.com/(?P<owner>[A-Za-z0-9-]+)/(?P<repo>[A-Za-z0-9._-]+)/"
                 r"(?P<ref>[^/]+)/(?P<path>.+)$")
NODE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,98}$")


def png_size(path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG's header, or None if the file is not a PNG."""
    head = path.read_bytes()[:24]
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


def metadata_problems(root: Path, release: bool) -> list[str]:
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return [f"pyproject.toml cannot be read: {exc}."]
    project, comfy = data.get("project", {}), data.get("tool", {}).get("comfy", {})
    problems = []
    name = project.get("name", "")
    if not NODE_ID.match(name) or re.search(r"[_.-]{2}", name) or "comfyui" in name.lower():
        problems.append(f"[project] name {name!r} is not a registry node id (a letter first, then letters, digits, "
                        "'-', '_' or '.', none twice in a row, under 100 characters, without 'ComfyUI').")
    if not re.match(r"^\d+\.\d+\.\d+$", project.get("version", "")):
        problems.append(f"[project] version {project.get('version')!r} is not X.Y.Z.")
    licence = project.get("license", {})
    if not isinstance(licence, dict) or not (licence.get("text") or (root / licence.get("file", "")).is_file()):
        problems.append("[project] license must be {file = \"LICENSE\"} naming a file that exists, or {text = ...}.")

    repository = project.get("urls", {}).get("Repository", "")
    repo = GITHUB.match(repository)
    if not repo:
        problems.append(f"[project.urls] Repository {repository!r} is not https://github.com/<account>/<repository>.")
    icon = comfy.get("Icon", "")
    raw = RAW.match(icon)
    if not raw:
        problems.append(f"[tool.comfy] Icon {icon!r} is not a https://raw.githubusercontent.com/<account>/"
                        "<repository>/<branch>/<file> address.")
    else:
        if repo and (raw["owner"], raw["repo"]) != (repo["owner"], repo["repo"]):
            problems.append(f"[tool.comfy] Icon is served from {raw['owner']}/{raw['repo']}, but the Repository is "
                            f"{repo['owner']}/{repo['repo']}: point both at the same repository.")
        file = root / raw["path"]
        size = png_size(file) if file.is_file() else None
        if not file.is_file():
            problems.append(f"[tool.comfy] Icon names {raw['path']}, which is not in this repository.")
        elif size is None:
            problems.append(f"[tool.comfy] Icon {raw['path']} is not a PNG file.")
        elif size[0] != size[1] or size[0] > ICON_MAX_PX:
            problems.append(f"[tool.comfy] Icon {raw['path']} is {size[0]}x{size[1]} px; the registry wants a square "
                            f"of at most {ICON_MAX_PX} px.")
    for key in ("PublisherId", "DisplayName", "requires-comfyui"):
        if not str(comfy.get(key, "")).strip():
            problems.append(f"[tool.comfy] {key} is empty.")
    if release:
        placeholders = [line.strip() for line in (root / "pyproject.toml").read_text(encoding="utf-8").splitlines()
                        if PLACEHOLDER in line and not line.lstrip().startswith("#")]
        if placeholders:
            problems.append(f"pyproject.toml still holds the placeholder {PLACEHOLDER} ({'; '.join(placeholders)}): "
                            "put the GitHub account that publishes the pack there before publishing.")
    return problems


def archive_problems(names: list[str]) -> list[str]:
    problems = [f"The archive lacks {name}." for name in REQUIRED_IN_ARCHIVE if name not in names]
    problems += [f"The archive has nothing in {folder}." for folder in REQUIRED_FOLDERS_IN_ARCHIVE
                 if not any(n.startswith(folder) for n in names)]
    for folder in LEFT_OUT_OF_ARCHIVE:
        inside = [n for n in names if n.startswith(folder)]
        if inside:
            problems.append(f"The archive holds {len(inside)} file(s) of {folder} (e.g. {inside[0]}): "
                            f".comfyignore must leave {folder} out.")
    return problems


def comfy_cli_problems(root: Path, comfy: str) -> list[str]:
    """`comfy node validate` must pass without a warning; `comfy node pack`'s archive is checked."""
    base = [comfy, "--skip-prompt", "--no-enable-telemetry", "node"]
    try:
        validate = subprocess.run(base + ["validate"], cwd=root, capture_output=True, text=True)
    except OSError as exc:
        return [f"comfy-cli could not be run ({exc}); install it with 'pip install comfy-cli' and pass --comfy."]
    output = (validate.stdout + validate.stderr).strip()
    if validate.returncode != 0 or "All validation checks passed" not in output:
        return [f"comfy node validate did not pass cleanly (exit {validate.returncode}):\n{output}"]
    archive = root / "node.zip"
    if archive.exists():
        return [f"{archive} exists already; move it away (comfy node pack writes there)."]
    try:
        pack = subprocess.run(base + ["pack"], cwd=root, capture_output=True, text=True)
        if pack.returncode != 0 or not archive.is_file():
            return [f"comfy node pack failed (exit {pack.returncode}):\n{(pack.stdout + pack.stderr).strip()}"]
        with zipfile.ZipFile(archive) as zipped:
            return archive_problems(zipped.namelist())
    finally:
        archive.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfy", default="comfy", help="the comfy-cli program (default: comfy on PATH)")
    parser.add_argument("--release", action="store_true", help="also fail on placeholders: run before publishing")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--skip-comfy-cli", action="store_true", help="only the metadata checks")
    args = parser.parse_args(argv)
    problems = metadata_problems(args.root, args.release)
    if not args.skip_comfy_cli:
        problems += comfy_cli_problems(args.root, args.comfy)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print("Ready to publish." if args.release else
          f"Registry checks passed (placeholders such as {PLACEHOLDER} are checked with --release, before publishing).")
    return 0


if __name__ == "__main__":
    sys.exit(main())

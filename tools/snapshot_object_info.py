"""Record the node definitions that the shipped workflows use from a running ComfyUI host.

    python tools/snapshot_object_info.py --url http://127.0.0.1:8188

reads `GET /object_info` and `GET /system_stats` of a running ComfyUI (with VideoHelperSuite installed),
keeps the node types that `example_workflows/*.json` use and that are not this pack's own (the tests take those from the
pack's NODE_CLASS_MAPPINGS) nor the frontend's own Note nodes (not in /object_info), empties the option lists
that only list the host's installed files, and writes `tests/fixtures/comfyui_object_info.json`. Standard library only.
"""
from __future__ import annotations

import argparse
import json
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# (node type, input): combos whose options are the files on the host, not a property of the node.
FILE_LIST_INPUTS = {("LoadImage", "image"), ("LoadVideo", "file"), ("VHS_LoadVideo", "video"),
                    ("VAELoader", "vae_name"), ("CLIPVisionLoader", "clip_name")}
# Node types the frontend provides itself (virtual nodes): no server definition to record.
FRONTEND_ONLY_TYPES = {"Note", "MarkdownNote"}


def get(url: str):
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8188")
    parser.add_argument("--workflows", type=Path, default=ROOT / "example_workflows")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "comfyui_object_info.json")
    args = parser.parse_args()

    object_info = get(args.url.rstrip("/") + "/object_info")
    stats = get(args.url.rstrip("/") + "/system_stats")
    used = sorted({node["type"] for path in sorted(args.workflows.glob("*.json"))
                   for node in json.loads(path.read_text(encoding="utf-8"))["nodes"]} - FRONTEND_ONLY_TYPES)
    ours = {key for key, info in object_info.items() if info.get("category", "").split("/")[0] == "TalkingPose"}
    missing = [t for t in used if t not in object_info]
    if missing:
        raise SystemExit(f"the host lacks node types the workflows use: {missing} (is VideoHelperSuite installed?)")
    nodes = {}
    for node_type in used:
        if node_type in ours:
            continue
        info = json.loads(json.dumps(object_info[node_type]))
        for section in ("required", "optional"):
            for name, spec in info["input"].get(section, {}).items():
                if (node_type, name) in FILE_LIST_INPUTS:
                    if isinstance(spec[0], list):
                        spec[0] = []
                    elif len(spec) > 1 and isinstance(spec[1], dict) and "options" in spec[1]:
                        spec[1]["options"] = []
        nodes[node_type] = info
    system = stats.get("system", {})
    snapshot = {
        "meta": {
            "source": "GET /object_info of a running ComfyUI host, restricted to the node types used by example_workflows/*.json "
                      "(this pack's own nodes excluded; installed-file option lists emptied)",
            "comfyui_version": system.get("comfyui_version"),
            "python_version": system.get("python_version"),
            "generated_by": "tools/snapshot_object_info.py",
        },
        "nodes": nodes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(snapshot, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({len(nodes)} node types: {', '.join(nodes)})")


if __name__ == "__main__":
    main()

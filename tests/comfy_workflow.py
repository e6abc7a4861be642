"""ComfyUI workflow files for the tests: node definitions, validation of UI workflows, conversion to API prompts.

Node definitions use the shape of ComfyUI's `GET /object_info` (one dict per node type with `input`,
`input_order`, `output`, `output_name`, `output_node`). The pack's own nodes are described from its
`NODE_CLASS_MAPPINGS`; ComfyUI core and VideoHelperSuite nodes come from a snapshot of a real ComfyUI v0.8.0
host (`tests/fixtures/comfyui_object_info.json`, written by `tools/snapshot_object_info.py`).

UI workflows (what the frontend saves, LiteGraph "version 0.4") store widget values in `widgets_values`: a list in
widget order, where a widget declared with `control_after_generate` (or an INT widget named `seed` or `noise_seed`
that does not declare it False, which the frontend gives one by itself) is followed by its control value ("fixed",
"randomize", …) and an upload
combo (`image_upload` / `video_upload`) by the upload button's value;
VideoHelperSuite nodes store a dict keyed by widget name instead. Note nodes exist only in the frontend: they are
not in /object_info and are not sent to the server (the frontend's graphToPrompt skips virtual nodes).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "comfyui_object_info.json"
PRIMITIVE_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"  # a combo whose choice adds widgets (ComfyUI v0.33's SaveVideo format/codec)
WIDGET_TYPES = PRIMITIVE_TYPES | {DYNAMIC_COMBO}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
# INT widgets the frontend (1.35 and 1.49 alike) gives a control_after_generate widget without being asked, unless
# their options say "control_after_generate": False (it reads `spec.control_after_generate ?? name in [...]`).
SEED_WIDGET_NAMES = ("seed", "noise_seed")
UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload")
# Node types the frontend itself provides (virtual nodes): no server definition, never part of an API prompt.
FRONTEND_ONLY_TYPES = {"Note", "MarkdownNote"}

# Combos whose options are the files installed on a machine: a shipped workflow names a file the user is told
# to put there, which no CI machine has. Their values are checked by extension instead of against the options.
FILE_CHOICE_INPUTS = {
    ("LoadImage", "image"): (".png", ".jpg", ".jpeg", ".webp"),
    ("LoadVideo", "file"): (".mp4", ".webm", ".mov", ".mkv"),
    ("VHS_LoadVideo", "video"): (".mp4", ".webm", ".mov", ".mkv"),
    ("VAELoader", "vae_name"): (".safetensors", ".pt", ".ckpt", ".sft"),
    ("CLIPVisionLoader", "clip_name"): (".safetensors", ".pt", ".bin", ".sft"),
    ("TalkingPoseModelLoader", "model"): ("/", ".safetensors"),
    ("TalkingPoseLoadLoRA", "lora"): (".safetensors",),
}


# ----------------------------------------------------------------------------------------------- definitions
def load_host_definitions(path: Path = FIXTURE) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))["nodes"]


def pack_definitions(node_class_mappings: dict) -> dict:
    """object_info-shaped definitions of the pack's nodes, built the way ComfyUI's server builds them."""
    defs = {}
    for key, cls in node_class_mappings.items():
        inputs = json.loads(json.dumps(cls.INPUT_TYPES()))  # tuples -> lists, as the server sends them
        outputs = list(cls.RETURN_TYPES)
        defs[key] = {
            "input": inputs,
            "input_order": {section: list(spec) for section, spec in inputs.items()},
            "output": outputs,
            "output_name": list(getattr(cls, "RETURN_NAMES", None) or outputs),
            "output_node": bool(getattr(cls, "OUTPUT_NODE", False)),
            "name": key,
        }
    return defs


def is_widget(spec) -> bool:
    return isinstance(spec[0], list) or spec[0] in WIDGET_TYPES


def is_hidden(spec) -> bool:
    """An input the frontend neither shows nor sends (kept by the server for old API prompts)."""
    return bool(spec_options(spec).get("hidden"))


def spec_options(spec) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def combo_choices(spec) -> list | None:
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO":
        return spec_options(spec).get("options", [])
    if spec[0] == DYNAMIC_COMBO:
        return [option["key"] for option in spec_options(spec).get("options", [])]
    return None


def default_value(spec):
    """What the frontend puts in a widget the saved workflow has no value for, or None if it has no default."""
    options = spec_options(spec)
    if "default" in options:
        return options["default"]
    choices = combo_choices(spec)
    return choices[0] if choices else None


def input_spec(node_def: dict, name: str):
    """(spec, section) of an input, or (None, None)."""
    for section in ("required", "optional"):
        spec = node_def["input"].get(section, {}).get(name)
        if spec is not None:
            return spec, section
    return None, None


def ordered_inputs(node_def: dict):
    """(name, spec, section) for the required then optional inputs, in declaration order."""
    for section in ("required", "optional"):
        for name in node_def.get("input_order", {}).get(section, node_def["input"].get(section, {})):
            yield name, node_def["input"][section][name], section


def visible_widgets(node_def: dict):
    """(name, spec, section) of the widgets the frontend shows for the node's declared inputs, in order."""
    for name, spec, section in ordered_inputs(node_def):
        if is_widget(spec) and not is_hidden(spec):
            yield name, spec, section


def dynamic_widgets(name: str, spec, value) -> list:
    """The widgets a dynamic combo (ComfyUI v3 DynamicCombo, e.g. SaveVideo's format) adds for the chosen option,
    named '<combo>.<input>' as the server reads them."""
    for option in spec_options(spec).get("options", []) if spec[0] == DYNAMIC_COMBO else []:
        if option["key"] == value:
            return [(f"{name}.{sub}", sub_spec, section) for section in ("required", "optional")
                    for sub, sub_spec in option["inputs"].get(section, {}).items() if is_widget(sub_spec)]
    return []


def extra_format_widgets(node_def: dict, values: dict) -> list:
    """VideoHelperSuite's format-dependent widgets (VHS_VideoCombine: pix_fmt, crf, … for the chosen format)."""
    out = []
    for name, spec, _ in ordered_inputs(node_def):
        formats = spec_options(spec).get("formats")
        if isinstance(formats, dict) and isinstance(spec[0], list) and isinstance(formats.get(values.get(name)), list):
            for extra in formats[values[name]]:
                out.append((extra[0], [extra[1], *(extra[2:3])]))
    return out


def all_widgets(node_def: dict, values: dict) -> list:
    """(name, spec, section) of every widget the node shows with these values: declared, dynamic and format ones."""
    out = []
    for name, spec, section in visible_widgets(node_def):
        out.append((name, spec, section))
        out += dynamic_widgets(name, spec, values.get(name))
    return out + [(name, spec, "required") for name, spec in extra_format_widgets(node_def, values)]


# ----------------------------------------------------------------------------------------------- widget values
def widget_values(node: dict, node_def: dict, exact: bool = True) -> tuple[dict, list[str]]:
    """Map a UI node's `widgets_values` to {widget input name: value}; also returns problems found.

    exact: the definitions are the ones the workflow was saved with, so every widget must have its value.
    Otherwise the definitions may be newer (a running ComfyUI): the values go onto the node's widgets in order, as
    the frontend does when it loads the file, and widgets added since then get their defaults."""
    raw = node.get("widgets_values", [])
    problems = []
    if isinstance(raw, dict):
        values = {}
        for name, spec, _ in visible_widgets(node_def):
            if name in raw:
                values[name] = raw[name]
            elif not exact and default_value(spec) is not None:
                values[name] = default_value(spec)
        values.update({name: raw[name] for name, _ in extra_format_widgets(node_def, values) if name in raw})
        return values, problems
    values, i = {}, 0
    pending = list(visible_widgets(node_def))
    while pending:
        name, spec, section = pending.pop(0)
        if i < len(raw):
            values[name] = raw[i]
            i += 1
            options = spec_options(spec)
            if options.get("control_after_generate", spec[0] == "INT" and name in SEED_WIDGET_NAMES):
                if i >= len(raw) or raw[i] not in CONTROL_VALUES:
                    problems.append(f"widget '{name}' must be followed by its control_after_generate value "
                                    f"(one of {sorted(CONTROL_VALUES)}), got {raw[i] if i < len(raw) else 'nothing'!r}")
                i += 1
            elif any(options.get(flag) for flag in UPLOAD_FLAGS):
                if i < len(raw) and raw[i] in ("image", "video", "audio"):
                    i += 1  # the upload button's stored value
        elif exact:
            problems.append(f"widgets_values has no value for widget '{name}'")
            break
        elif default_value(spec) is not None:
            values[name] = default_value(spec)
        else:
            if section == "required":
                problems.append(f"the node's widget '{name}' is newer than the workflow and has no default")
            continue
        pending[:0] = dynamic_widgets(name, spec, values[name])
    if i < len(raw):
        problems.append(f"widgets_values has {len(raw) - i} value(s) more than the node's widgets: {raw[i:]!r}")
    return values, problems


def check_widget_value(node_type: str, name: str, spec, value) -> str | None:
    """Why `value` is not acceptable for the widget, or None."""
    if (node_type, name) in FILE_CHOICE_INPUTS:
        endings = FILE_CHOICE_INPUTS[(node_type, name)]
        if not isinstance(value, str) or not value.strip() or not value.lower().endswith(endings):
            return f"{name}={value!r} is not a file name ending in one of {endings}"
        return None
    choices = combo_choices(spec)
    if choices is not None:
        return None if value in choices else f"{name}={value!r} is not one of {choices}"
    kind, options = spec[0], spec_options(spec)
    if kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"{name}={value!r} is not a boolean"
    if kind == "STRING":
        return None if isinstance(value, str) else f"{name}={value!r} is not a string"
    if kind in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{name}={value!r} is not a number"
        if kind == "INT" and value != int(value):
            return f"{name}={value!r} is not an integer"
        if "min" in options and value < options["min"]:
            return f"{name}={value!r} is below the minimum {options['min']}"
        if "max" in options and value > options["max"]:
            return f"{name}={value!r} is above the maximum {options['max']}"
        return None
    return f"{name} has unknown widget type {kind!r}"


# ----------------------------------------------------------------------------------------------- validation
def _types_match(output_type, input_type) -> bool:
    if output_type == "*" or input_type == "*":
        return True
    if isinstance(input_type, list):  # a combo widget input stored with its option list as type
        input_type = "COMBO"
    out = set(str(output_type).split(","))
    return bool(out & set(str(input_type).split(",")))


def validate_workflow(workflow: dict, defs: dict, exact: bool = True) -> list[str]:
    """Every problem that would stop the workflow from loading or queueing as intended (empty list: none).

    exact (the snapshot the workflows were saved against, and the pack's own nodes): the workflow must be as the
    frontend saves it for exactly these definitions. Otherwise `defs` is a running ComfyUI's /object_info, which
    may be newer: only what the workflow relies on is checked (its node types, the inputs it links and the widget
    values it sets, by position as the frontend applies them; the output slots its links start from; every
    required input connected), so inputs, outputs and widgets a newer node added after them are no break.
    """
    errors = []
    for key in ("last_node_id", "last_link_id", "nodes", "links", "version"):
        if key not in workflow:
            errors.append(f"top-level key '{key}' is missing")
    if errors:
        return errors
    if workflow["version"] != 0.4:
        errors.append(f"version is {workflow['version']!r}, expected 0.4")
    nodes = {}
    for node in workflow["nodes"]:
        for key in ("id", "type", "pos", "size", "flags", "order", "mode", "properties"):
            if key not in node:
                errors.append(f"node {node.get('id')} lacks '{key}'")
        if node.get("id") in nodes:
            errors.append(f"node id {node['id']} is used twice")
        nodes[node.get("id")] = node
    links = {}
    for link in workflow["links"]:
        if not isinstance(link, list) or len(link) != 6:
            errors.append(f"link {link!r} is not [id, origin_id, origin_slot, target_id, target_slot, type]")
            continue
        if link[0] in links:
            errors.append(f"link id {link[0]} is used twice")
        links[link[0]] = link
    if nodes and max(n for n in nodes if isinstance(n, int)) > workflow["last_node_id"]:
        errors.append("last_node_id is smaller than a node id")
    if links and max(links) > workflow["last_link_id"]:
        errors.append("last_link_id is smaller than a link id")

    for node in workflow["nodes"]:
        where = f"node {node['id']} ({node['type']})"
        if node["type"] in FRONTEND_ONLY_TYPES:
            values = node.get("widgets_values")
            if not (isinstance(values, list) and len(values) == 1 and isinstance(values[0], str) and values[0].strip()):
                errors.append(f"{where}: widgets_values must hold the note's text")
            if node.get("inputs") or any(o.get("links") for o in node.get("outputs") or []):
                errors.append(f"{where}: a note has no connections")
            continue
        node_def = defs.get(node["type"])
        if node_def is None:
            errors.append(f"{where}: node type '{node['type']}' does not exist")
            continue
        if node.get("mode", 0) != 0:
            errors.append(f"{where}: mode {node['mode']} (muted/bypassed nodes do not belong in a shipped workflow)")
        values, problems = widget_values(node, node_def, exact)
        errors += [f"{where}: {p}" for p in problems]
        extras = dict(extra_format_widgets(node_def, values))
        has_upload = any(spec_options(spec).get(flag) for _, spec, _ in ordered_inputs(node_def) for flag in UPLOAD_FLAGS)
        # inputs: names and types against the definition, and their links
        linked = set()
        for slot, inp in enumerate(node.get("inputs") or []):
            spec, section = input_spec(node_def, inp["name"])
            if spec is None and inp["name"] in extras:
                spec, section = extras[inp["name"]], "required"
            if spec is None and has_upload and str(inp["type"]).endswith("UPLOAD") and inp.get("link") is None:
                continue  # the frontend (1.35) also lists the upload button of LoadImage/LoadVideo as an input
            if spec is None:
                errors.append(f"{where}: input '{inp['name']}' is not an input of {node['type']}")
                continue
            if is_widget(spec):
                if (inp.get("widget") or {}).get("name") != inp["name"]:
                    errors.append(f"{where}: widget input '{inp['name']}' lacks \"widget\": {{\"name\": ...}}")
                expected = "COMBO" if combo_choices(spec) is not None else spec[0]
                if not (inp["type"] == expected or (expected == "COMBO" and isinstance(inp["type"], list))):
                    errors.append(f"{where}: input '{inp['name']}' has type {inp['type']!r}, the node declares {expected!r}")
            elif inp["type"] != spec[0]:
                errors.append(f"{where}: input '{inp['name']}' has type {inp['type']!r}, the node declares {spec[0]!r}")
            link_id = inp.get("link")
            if link_id is None:
                continue
            link = links.get(link_id)
            if link is None:
                errors.append(f"{where}: input '{inp['name']}' refers to link {link_id}, which does not exist")
                continue
            if link[3] != node["id"] or link[4] != slot:
                errors.append(f"{where}: link {link_id} targets node {link[3]} slot {link[4]}, not this input (slot {slot})")
            linked.add(inp["name"])
        present = {inp["name"] for inp in node.get("inputs") or []}
        for name, spec, section in ordered_inputs(node_def):
            if exact and not is_widget(spec) and name not in present:
                errors.append(f"{where}: the node's {section} input '{name}' ({spec[0]}) is missing from the "
                              "workflow's inputs (saved with an older version of the node?)")
        # outputs: names and types in order (a newer node may add outputs after the ones linked), and their links
        outputs = node.get("outputs") or []
        declared = list(zip(node_def.get("output_name", node_def["output"]), node_def["output"]))
        if exact and [(o["name"], o["type"]) for o in outputs] != [tuple(d) for d in declared]:
            errors.append(f"{where}: outputs {[(o['name'], o['type']) for o in outputs]} differ from the node's {declared}")
        for slot, out in enumerate(outputs):
            if not exact and out.get("links") and (slot >= len(declared) or tuple(declared[slot]) != (out["name"], out["type"])):
                now = f"is {tuple(declared[slot])}" if slot < len(declared) else "does not exist"
                errors.append(f"{where}: output slot {slot} ('{out['name']}', {out['type']!r}) is linked, but on "
                              f"this host that slot {now}")
        for slot, out in enumerate(outputs):
            for link_id in out.get("links") or []:
                link = links.get(link_id)
                if link is None or link[1] != node["id"] or link[2] != slot:
                    errors.append(f"{where}: output '{out['name']}' lists link {link_id}, which does not start here")
        # widget values (declared, dynamic and format widgets) and required inputs
        for name, spec, section in all_widgets(node_def, values):
            if name in linked:
                continue
            if name not in values:
                if name in extras:
                    errors.append(f"{where}: format widget '{name}' has no value")
                elif section == "required":
                    errors.append(f"{where}: required widget '{name}' has neither a value nor a link")
                continue
            problem = check_widget_value(node["type"], name, spec, values[name])
            if problem:
                errors.append(f"{where}: {problem}")
        for name, spec, section in ordered_inputs(node_def):
            if not is_widget(spec) and section == "required" and name not in linked:
                errors.append(f"{where}: required input '{name}' ({spec[0]}) is not connected")

    # links: both ends exist and the types fit
    for link_id, (_, origin_id, origin_slot, target_id, target_slot, link_type) in links.items():
        origin, target = nodes.get(origin_id), nodes.get(target_id)
        if origin is None or target is None:
            errors.append(f"link {link_id}: node {origin_id if origin is None else target_id} does not exist")
            continue
        outputs, inputs = origin.get("outputs") or [], target.get("inputs") or []
        if origin_slot >= len(outputs) or target_slot >= len(inputs):
            errors.append(f"link {link_id}: slot out of range ({origin_id}:{origin_slot} -> {target_id}:{target_slot})")
            continue
        out, inp = outputs[origin_slot], inputs[target_slot]
        if link_id not in (out.get("links") or []) or inp.get("link") != link_id:
            errors.append(f"link {link_id}: not recorded on both ends ({origin['type']}.{out['name']} -> {target['type']}.{inp['name']})")
        if link_type != out["type"]:
            errors.append(f"link {link_id}: type {link_type!r} differs from output type {out['type']!r}")
        target_def = defs.get(target["type"])
        spec = input_spec(target_def, inp["name"])[0] if target_def else None
        if spec is None and target_def:
            spec = dict(extra_format_widgets(target_def, widget_values(target, target_def, exact)[0])).get(inp["name"])
        declared = None if spec is None else ("COMBO" if combo_choices(spec) is not None else spec[0])
        given = out["type"]
        if not exact:  # what the host's own origin node gives at that slot (a changed slot was reported above)
            origin_outputs = defs.get(origin["type"], {}).get("output", [])
            given = origin_outputs[origin_slot] if origin_slot < len(origin_outputs) else given
        if declared is not None and not _types_match(given, declared):
            errors.append(f"link {link_id}: {origin['type']}.{out['name']} gives {given!r} but "
                          f"{target['type']}.{inp['name']} takes {declared!r}")

    if not any(defs.get(n["type"], {}).get("output_node") for n in workflow["nodes"]):
        errors.append("no output node: ComfyUI refuses to queue a workflow without one")
    return errors


# ----------------------------------------------------------------------------------------------- API prompt
def to_api_prompt(workflow: dict, defs: dict, exact: bool = True) -> dict:
    """The `prompt` of a POST /prompt for a UI workflow (what the frontend's graphToPrompt sends for these nodes).
    exact=False for a running ComfyUI's definitions: widgets newer than the workflow are sent with their defaults."""
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY_TYPES:
            continue
        if node.get("mode", 0) != 0:
            raise ValueError(f"node {node['id']} is muted or bypassed; not supported here")
        node_def = defs[node["type"]]
        values, problems = widget_values(node, node_def, exact)
        if problems:
            raise ValueError(f"node {node['id']} ({node['type']}): {'; '.join(problems)}")
        inputs = dict(values)
        for inp in node.get("inputs") or []:
            if inp.get("link") is not None:
                link = links[inp["link"]]
                inputs[inp["name"]] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs,
                                   "_meta": {"title": node.get("title", node["type"])}}
    return prompt


def nodes_of_type(prompt: dict, class_type: str) -> list[dict]:
    return [n for n in prompt.values() if n["class_type"] == class_type]


# ----------------------------------------------------------------------------------------------- newer hosts
# Changes a newer ComfyUI could make to the core nodes of 1 Animate a photo (core nodes).json. The first kind keeps every
# saved workflow working (v0.33.0 made such changes: CreateVideo gained bit_depth, GetVideoComponents two outputs,
# SaveVideo an output); the second breaks what the workflow relies on and must be reported.
def _append_input(defs, node_type, section, name, spec, first=False):
    node = defs[node_type]
    node["input"].setdefault(section, {})[name] = spec
    order = node.setdefault("input_order", {}).setdefault(section, [])
    order.insert(0, name) if first else order.append(name)


def _insert_output(defs, node_type, slot, name, kind):
    node = defs[node_type]
    for key, value in (("output", kind), ("output_name", name), ("output_is_list", False)):
        if key in node:
            node[key].insert(slot, value)


def _rename_input(defs, node_type, old, new):
    node = defs[node_type]
    for section, specs in node["input"].items():
        if old in specs:
            node["input"][section] = {new if k == old else k: v for k, v in specs.items()}
            node["input_order"][section] = [new if k == old else k for k in node["input_order"][section]]


COMPATIBLE_CHANGES = {
    "CreateVideo gains an optional widget": lambda d: _append_input(
        d, "CreateVideo", "optional", "quality", ["INT", {"default": 5, "min": 0, "max": 10}]),
    "GetVideoComponents gains an output at the end": lambda d: _insert_output(
        d, "GetVideoComponents", len(d["GetVideoComponents"]["output"]), "frame_count", "INT"),
    "SaveVideo gains an output": lambda d: _insert_output(d, "SaveVideo", len(d["SaveVideo"]["output"]), "path", "STRING"),
    "LoadVideo gains an optional input": lambda d: _append_input(d, "LoadVideo", "optional", "mask", ["MASK"]),
}
BREAKING_CHANGES = {
    "GetVideoComponents gains an output before fps": (
        lambda d: _insert_output(d, "GetVideoComponents", 2, "duration", "FLOAT"),
        "output slot 2 ('fps', 'FLOAT') is linked, but on this host that slot is ('duration', 'FLOAT')"),
    "CreateVideo renames its audio input": (
        lambda d: _rename_input(d, "CreateVideo", "audio", "sound"), "input 'audio' is not an input of CreateVideo"),
    "SaveVideo gains a widget before filename_prefix": (
        lambda d: _append_input(d, "SaveVideo", "required", "quality", ["INT", {"default": 5}], first=True),
        "quality="),  # the saved filename_prefix lands on the new INT widget
    "GetVideoComponents gains a required input": (
        lambda d: _append_input(d, "GetVideoComponents", "required", "mask", ["MASK"]),
        "required input 'mask' (MASK) is not connected"),
    "CreateVideo takes latents instead of images": (
        lambda d: d["CreateVideo"]["input"]["required"]["images"].__setitem__(0, "LATENT"),
        "gives 'IMAGE' but CreateVideo.images takes 'LATENT'"),
}

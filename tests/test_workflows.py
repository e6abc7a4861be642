"""The shipped UI workflows in example_workflows/ fit the nodes they use.

Our nodes are described from the pack's NODE_CLASS_MAPPINGS, ComfyUI core and VideoHelperSuite nodes from
snapshots of real hosts' /object_info: ComfyUI v0.8.0, which the workflows were saved against
(tests/fixtures/comfyui_object_info.json, checked exactly), and v0.33.0 (comfyui_object_info_v0.33.0.json, checked
as a newer host loads them). No ComfyUI needed.
"""
import copy
import json
import sys

import pytest

from comfy_workflow import (BREAKING_CHANGES, COMPATIBLE_CHANGES, FIXTURE, FRONTEND_ONLY_TYPES, load_host_definitions,
                            pack_definitions, to_api_prompt, validate_workflow, visible_widgets)
from helpers import PACK_ROOT

WORKFLOW_DIR = PACK_ROOT / "example_workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.json"))
EXPECTED = {"1 Animate a photo (core nodes).json", "2 Animate a photo (VideoHelperSuite).json", "3 Long video in chunks.json",
            "4 Personalize - train a LoRA.json", "5 Personalize - render with the LoRA.json"}
TRAIN_WORKFLOW = WORKFLOW_DIR / "4 Personalize - train a LoRA.json"
RENDER_WORKFLOWS = [p for p in WORKFLOWS if p != TRAIN_WORKFLOW]  # the ones that animate a photo
NEWER_HOST = FIXTURE.with_name("comfyui_object_info_v0.33.0.json")


@pytest.fixture(scope="module")
def defs():
    from nodes import NODE_CLASS_MAPPINGS

    host = load_host_definitions()
    ours = pack_definitions(NODE_CLASS_MAPPINGS)
    assert not set(host) & set(ours), "the host snapshot must not hold the pack's own nodes"
    return {**host, **ours}


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def node(workflow, node_type):
    found = [n for n in workflow["nodes"] if n["type"] == node_type]
    assert len(found) == 1, f"expected one {node_type}, found {len(found)}"
    return found[0]


def source_of(workflow, target, input_name):
    """(origin node, output name) feeding an input."""
    inp = next(i for i in target["inputs"] if i["name"] == input_name)
    assert inp["link"] is not None, f"{target['type']}.{input_name} is not connected"
    link = next(link for link in workflow["links"] if link[0] == inp["link"])
    origin = next(n for n in workflow["nodes"] if n["id"] == link[1])
    return origin, origin["outputs"][link[2]]["name"]


def test_the_shipped_workflows_are_there():
    assert {p.name for p in WORKFLOWS} >= EXPECTED


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_the_vae_carries_its_download_and_the_converted_encoder_none(path):
    """The frontend's missing-models dialog offers a file for download from a loader's `models` metadata (name,
    url, directory). The VAE is one published file; the image encoder is published only as pytorch_model.bin plus
    config.json and converted by `cli.py download`, so it carries none (web/weights.js gives its command)."""
    from talkingpose.downloads import IMAGE_ENCODER_FILE, VAE_FILE, VAE_REPO

    workflow = load(path)
    vae = node(workflow, "VAELoader")
    assert vae["widgets_values"] == [VAE_FILE]
    assert vae["properties"]["models"] == [{
        "name": VAE_FILE, "url": f"https://huggingface.co/{VAE_REPO}/resolve/main/{VAE_FILE}", "directory": "vae"}]
    clip = node(workflow, "CLIPVisionLoader")
    assert clip["widgets_values"] == [IMAGE_ENCODER_FILE] and "models" not in clip["properties"]


def test_template_cards_read_as_titles_in_order():
    """The template browser (frontend 1.49 and 1.58) titles a custom pack's card with the file name as it is and
    lists them in the server's order (a folder listing: by name on NTFS), so the names are the titles, numbered
    core first, and valid file names on Windows."""
    names = [p.stem for p in WORKFLOWS]
    assert names == sorted(names)
    assert [name.split(" ", 1)[0] for name in names] == [str(i) for i in range(1, len(names) + 1)]
    assert names[0] == "1 Animate a photo (core nodes)"
    for name in names:
        assert not set(name) & set('<>:"/\\|?*') and name.isascii() and name == name.strip(), name


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_template_has_a_square_picture_for_its_card(path):
    from PIL import Image

    with Image.open(path.with_suffix(".jpg")) as picture:  # the card crops to a square
        assert picture.format == "JPEG" and picture.width == picture.height >= 512


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_is_valid(path, defs):
    assert validate_workflow(load(path), defs) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_loads_on_a_newer_comfyui(path):
    from nodes import NODE_CLASS_MAPPINGS

    newer = {**load_host_definitions(NEWER_HOST), **pack_definitions(NODE_CLASS_MAPPINGS)}
    workflow = load(path)
    assert validate_workflow(workflow, newer, exact=False) == []
    prompt = to_api_prompt(workflow, newer, exact=False)
    for entry in prompt.values():  # what v0.33.0's frontend sends: new widgets with their defaults
        if entry["class_type"] == "CreateVideo":
            assert entry["inputs"]["bit_depth"] == 8
        if entry["class_type"] == "SaveVideo":
            assert entry["inputs"]["format"] == "auto" and entry["inputs"]["format.codec"] == "auto"


@pytest.mark.parametrize("change", COMPATIBLE_CHANGES, ids=list(COMPATIBLE_CHANGES))
def test_the_check_for_newer_hosts_accepts_additions(change, defs):
    changed = copy.deepcopy(defs)
    COMPATIBLE_CHANGES[change](changed)
    assert validate_workflow(load(WORKFLOW_DIR / "1 Animate a photo (core nodes).json"), changed, exact=False) == []


@pytest.mark.parametrize("change", BREAKING_CHANGES, ids=list(BREAKING_CHANGES))
def test_the_check_for_newer_hosts_reports_a_real_break(change, defs):
    mutate, message = BREAKING_CHANGES[change]
    changed = copy.deepcopy(defs)
    mutate(changed)
    errors = validate_workflow(load(WORKFLOW_DIR / "1 Animate a photo (core nodes).json"), changed, exact=False)
    assert any(message in e for e in errors), errors


@pytest.mark.parametrize("path", RENDER_WORKFLOWS, ids=lambda p: p.name)
def test_workflow_converts_to_an_api_prompt(path, defs):
    workflow = load(path)
    prompt = to_api_prompt(workflow, defs)
    assert len(prompt) == len([n for n in workflow["nodes"] if n["type"] not in FRONTEND_ONLY_TYPES])
    sampler = next(n for n in prompt.values() if n["class_type"] == "TalkingPoseClosedLoopSampler")
    # The seed's control_after_generate entry is skipped, not shifted into steps.
    assert isinstance(sampler["inputs"]["seed"], int)
    assert isinstance(sampler["inputs"]["steps"], int) and sampler["inputs"]["steps"] >= 1
    assert 0.0 <= sampler["inputs"]["beta"] <= 1.0
    for entry in prompt.values():
        for value in entry["inputs"].values():
            if isinstance(value, list):  # a link: [origin id as string, output slot]
                assert value[0] in prompt and isinstance(value[1], int)


def test_core_workflow_carries_fps_and_audio(defs):
    workflow = load(WORKFLOW_DIR / "1 Animate a photo (core nodes).json")
    create = node(workflow, "CreateVideo")
    assert source_of(workflow, create, "fps") == (node(workflow, "GetVideoComponents"), "fps")
    assert source_of(workflow, create, "audio") == (node(workflow, "GetVideoComponents"), "audio")
    assert source_of(workflow, node(workflow, "TalkingPoseExtract"), "images") == (node(workflow, "GetVideoComponents"), "images")
    assert source_of(workflow, node(workflow, "SaveVideo"), "video")[0] is create
    sampler = node(workflow, "TalkingPoseClosedLoopSampler")
    assert source_of(workflow, sampler, "pose_images") == (node(workflow, "TalkingPoseExtract"), "pose_images")


def test_videohelpersuite_workflow_carries_frame_rate_and_audio(defs):
    workflow = load(WORKFLOW_DIR / "2 Animate a photo (VideoHelperSuite).json")
    combine, loader = node(workflow, "VHS_VideoCombine"), node(workflow, "VHS_LoadVideo")
    origin, output = source_of(workflow, combine, "frame_rate")
    assert origin["type"] == "VHS_VideoInfo" and output.startswith("loaded_fps")
    assert source_of(workflow, origin, "video_info") == (loader, "video_info")
    assert source_of(workflow, combine, "audio") == (loader, "audio")
    assert combine["widgets_values"]["format"].startswith("video/")


def test_long_video_workflow_runs_in_meta_batches(defs):
    workflow = load(WORKFLOW_DIR / "3 Long video in chunks.json")
    manager, loader = node(workflow, "VHS_BatchManager"), node(workflow, "VHS_LoadVideo")
    sampler, combine = node(workflow, "TalkingPoseClosedLoopSampler"), node(workflow, "VHS_VideoCombine")
    # One manager drives the loader, the sampler (closed loop carried across chunks) and the single output video.
    for target in (loader, sampler, combine):
        assert source_of(workflow, target, "meta_batch") == (manager, "meta_batch"), target["type"]
    assert manager["widgets_values"]["frames_per_batch"] >= 8
    extract = node(workflow, "TalkingPoseExtract")
    assert source_of(workflow, extract, "images") == (loader, "IMAGE")
    # The poses are fitted to the photo; the fit (measured on the first chunk) and the smoothing go on across chunks
    # through the manager and are saved with the sampler state.
    assert source_of(workflow, extract, "source_image") == (node(workflow, "LoadImage"), "IMAGE")
    assert source_of(workflow, extract, "meta_batch") == (manager, "meta_batch")
    assert source_of(workflow, node(workflow, "TalkingPoseSaveState"), "pose_state") == (extract, "pose_state")
    assert source_of(workflow, sampler, "pose_images") == (extract, "pose_images")
    origin, output = source_of(workflow, combine, "frame_rate")
    assert origin["type"] == "VHS_VideoInfo" and output.startswith("loaded_fps")
    assert source_of(workflow, origin, "video_info") == (loader, "video_info")
    assert source_of(workflow, combine, "audio") == (loader, "audio")
    assert source_of(workflow, node(workflow, "TalkingPoseSaveState"), "state") == (sampler, "state")
    # frame_load_cap / skip_first_frames stay widgets (visible), and the note explains them and how to resume.
    assert {"frame_load_cap", "skip_first_frames"} <= set(loader["widgets_values"])
    assert all(i.get("link") is None for i in loader["inputs"] if i["name"] in ("frame_load_cap", "skip_first_frames"))
    text = node(workflow, "Note")["widgets_values"][0]
    for words in ("frame_load_cap", "skip_first_frames", "FIRST chunk", "Load TalkingPose State", "next_frame",
                  "pose_state"):
        assert words in text, words


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_widget_dict_is_read_as_a_list_by_the_newest_frontend(path, defs):
    """Frontend 1.58 (litegraphService's migrateWidgetsValues) runs every node's saved widgets_values through a
    filter that also accepts a dict: a dict holding exactly as many values as the node definition has widget
    inputs comes out as a positional list. VideoHelperSuite then finds a list that does not match its widgets and
    shows "Failed to restore node ... Please remove and re-add it." (the Meta Batch Manager saved with
    frames_per_batch alone did). Saved as VideoHelperSuite 1.7.9 writes them, the dicts keep another count."""
    for node_ in load(path)["nodes"]:
        values = node_.get("widgets_values")
        if isinstance(values, dict):
            widget_inputs = [name for name, _, _ in visible_widgets(defs[node_["type"]])]
            if widget_inputs:  # a node without widgets (Video Info) has nothing to restore
                assert len(values) != len(widget_inputs), (node_["type"], sorted(values), widget_inputs)


def test_the_meta_batch_manager_is_saved_as_videohelpersuite_writes_it(defs):
    manager = node(load(WORKFLOW_DIR / "3 Long video in chunks.json"), "VHS_BatchManager")
    assert manager["widgets_values"] == {"frames_per_batch": 32, "count": 0}  # count: VHS's hidden batch counter


@pytest.mark.parametrize("path", RENDER_WORKFLOWS, ids=lambda p: p.name)
def test_the_default_path_retargets_the_poses_to_the_photo(path, defs):
    workflow = load(path)
    extract, encode = node(workflow, "TalkingPoseExtract"), node(workflow, "TalkingPoseAppearanceEncode")
    values = to_api_prompt(workflow, defs)[str(extract["id"])]["inputs"]
    assert values["alignment"] == "retarget" and values["smoothing"] == 0.5
    assert source_of(workflow, extract, "source_image") == source_of(workflow, encode, "image")


def test_personalize_train_workflow_trains_on_the_clip_with_the_documented_defaults(defs):
    import re

    from talkingpose.finetune.trainer import FinetuneSettings

    workflow = load(TRAIN_WORKFLOW)
    prompt = to_api_prompt(workflow, defs)
    assert len(prompt) == len([n for n in workflow["nodes"] if n["type"] not in FRONTEND_ONLY_TYPES])
    for entry in prompt.values():
        for value in entry["inputs"].values():
            if isinstance(value, list):
                assert value[0] in prompt and isinstance(value[1], int)
    train, extract = node(workflow, "TalkingPoseTrainLoRA"), node(workflow, "TalkingPoseExtract")
    components = node(workflow, "GetVideoComponents")
    assert source_of(workflow, components, "video")[0] is node(workflow, "LoadVideo")
    assert source_of(workflow, train, "images") == (components, "images")
    assert source_of(workflow, extract, "images") == (components, "images")
    assert source_of(workflow, train, "poses") == (extract, "pose_images")
    # The clip's own poses, where they are: no photo to fit them to, no smoothing (as the finetune command).
    assert all(i["link"] is None for i in extract["inputs"] if i["name"] in ("source_image", "pose_state", "meta_batch"))
    assert to_api_prompt(workflow, defs)[str(extract["id"])]["inputs"]["smoothing"] == 0.0
    for loader, input_name in (("TalkingPoseModelLoader", "model"), ("CLIPVisionLoader", "clip_vision"),
                               ("VAELoader", "vae")):
        assert source_of(workflow, train, input_name)[0] is node(workflow, loader)
    assert source_of(workflow, node(workflow, "PreviewImage"), "images") == (train, "loss_curve")

    # Its values are the node's defaults, the engine's and docs/personalize.md's (1000 steps, rank 16, lr 1e-4, 512x512,
    # batch 4).
    values = prompt[str(train["id"])]["inputs"]
    spec = {**defs["TalkingPoseTrainLoRA"]["input"]["required"], **defs["TalkingPoseTrainLoRA"]["input"]["optional"]}
    engine = FinetuneSettings()
    documentation = (PACK_ROOT / "docs" / "personalize.md").read_text(encoding="utf-8")
    command = next(line for line in documentation.splitlines() if line.startswith("python cli.py finetune") and "--steps" in line)
    flags = dict(re.findall(r"--(steps|rank|lr|size|batch) (\S+)", command))
    documented = {"steps": int(flags["steps"]), "rank": int(flags["rank"]), "learning_rate": float(flags["lr"]),
                  "width": int(flags["size"].split("x")[0]), "height": int(flags["size"].split("x")[1]),
                  "batch": int(flags["batch"])}
    for name, value in documented.items():
        assert values[name] == spec[name][1]["default"] == value, name
        assert getattr(engine, "lr" if name == "learning_rate" else name) == value, name
    assert values["resume"] is True and values["seed"] == 0 and values["overwrite"] is False
    # No control value after the seed: the node declares control_after_generate False, so the frontend adds no
    # control that would change the seed after a queue (resume needs the same settings). overwrite is the last
    # widget, so workflows saved before it keep their values' order.
    assert train["widgets_values"][-3:] == [0, True, False]
    # The file it writes is the one the render workflow loads.
    render = to_api_prompt(load(WORKFLOW_DIR / "5 Personalize - render with the LoRA.json"), defs)
    lora = next(n for n in render.values() if n["class_type"] == "TalkingPoseLoadLoRA")
    assert lora["inputs"]["lora"] == f"{values['output_name']}.safetensors"


def test_personalize_render_workflow_encodes_and_samples_with_the_lora(defs):
    """The core-nodes workflow with Load TalkingPose LoRA after the model loader: Appearance Encode and the sampler
    both get the LoRA'd model (an appearance encoded without the LoRA is refused by the sampler)."""
    workflow = load(WORKFLOW_DIR / "5 Personalize - render with the LoRA.json")
    lora = node(workflow, "TalkingPoseLoadLoRA")
    assert source_of(workflow, lora, "model") == (node(workflow, "TalkingPoseModelLoader"), "model")
    for target in ("TalkingPoseAppearanceEncode", "TalkingPoseClosedLoopSampler"):
        assert source_of(workflow, node(workflow, target), "model") == (lora, "model"), target
    assert node(workflow, "TalkingPoseModelLoader")["outputs"][0]["links"] == [lora["inputs"][0]["link"]]
    prompt = to_api_prompt(workflow, defs)
    lora_id = str(lora["id"])
    assert prompt[lora_id]["inputs"]["strength"] == 1.0
    # Apart from the LoRA, it is the core-nodes workflow.
    base_model = prompt.pop(lora_id)["inputs"]["model"]
    for entry in prompt.values():
        entry["inputs"] = {k: base_model if v == [lora_id, 0] else v for k, v in entry["inputs"].items()}
    assert prompt == to_api_prompt(load(WORKFLOW_DIR / "1 Animate a photo (core nodes).json"), defs)


def _saved_before_retargeting(workflow):
    """The workflow as it was saved before Pose Extract had alignment, smoothing, pose_state and meta_batch."""
    extract = node(workflow, "TalkingPoseExtract")
    new = {"alignment", "smoothing", "pose_state", "meta_batch"}
    for inp in extract["inputs"]:
        if inp["name"] in new and inp.get("link") is not None:
            workflow["links"] = [link for link in workflow["links"] if link[0] != inp["link"]]
            for other in workflow["nodes"]:
                for out in other.get("outputs") or []:
                    out["links"] = [x for x in out.get("links") or [] if x != inp["link"]] or None
    for out in extract["outputs"][2:]:
        for link_id in out.get("links") or []:
            workflow["links"] = [link for link in workflow["links"] if link[0] != link_id]
            for other in workflow["nodes"]:
                for inp in other.get("inputs") or []:
                    if inp.get("link") == link_id:
                        inp["link"] = None
    extract["inputs"] = [inp for inp in extract["inputs"] if inp["name"] not in new]
    extract["outputs"] = extract["outputs"][:2]
    extract["widgets_values"] = extract["widgets_values"][:6]
    return workflow, extract


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_a_workflow_saved_before_retargeting_still_loads_and_aligns_as_before(path, defs):
    # What the frontend does with a node saved by an older version: widgets it lacks get their defaults.
    workflow, extract = _saved_before_retargeting(load(path))
    assert validate_workflow(workflow, defs, exact=False) == []
    inputs = to_api_prompt(workflow, defs, exact=False)[str(extract["id"])]["inputs"]
    assert inputs["alignment"] == "similarity" and inputs["smoothing"] == 0.0
    assert inputs["on_error"] == "stop" and inputs["width"] == 512  # the old widgets kept their values


def test_pose_extract_keeps_loading_workflows_saved_before_retargeting(defs):
    """The frontend stores widget values by position and fills missing ones with the widget's default; an API
    prompt without an optional input gets the function's default. Both must give the old behaviour: similarity
    alignment, no smoothing, the old widgets where they were."""
    import inspect

    from nodes.pose_nodes import TalkingPoseExtract

    spec = defs["TalkingPoseExtract"]
    widgets = [name for section in ("required", "optional") for name in spec["input_order"][section]
               if name in spec["input"][section] and spec["input"][section][name][0] not in ("IMAGE", "VHS_BatchManager",
                                                                                          "TALKINGPOSE_POSE_STATE")]
    assert widgets[:6] == ["width", "height", "body", "hands", "face", "on_error"]
    assert widgets[6:] == ["alignment", "smoothing"]
    optional = spec["input"]["optional"]
    assert optional["alignment"][1]["default"] == "similarity" and optional["smoothing"][1]["default"] == 0.0
    defaults = inspect.signature(TalkingPoseExtract.extract).parameters
    assert defaults["alignment"].default == "similarity" and defaults["smoothing"].default == 0.0
    assert spec["output"][:2] == ["IMAGE", "POSE_KEYPOINT"]  # saved links address outputs by slot


def test_a_train_workflow_saved_before_the_overwrite_widget_loads_and_does_not_overwrite(defs):
    """overwrite is the Train TalkingPose LoRA node's last widget: a workflow saved without it keeps every other
    value where it was, and gets overwrite off (the widget's default, and the function's)."""
    import inspect

    from nodes.lora_nodes import TrainTalkingPoseLoRA

    workflow = load(TRAIN_WORKFLOW)
    train = node(workflow, "TalkingPoseTrainLoRA")
    train["inputs"] = [inp for inp in train["inputs"] if inp["name"] != "overwrite"]
    train["widgets_values"] = train["widgets_values"][:-1]
    assert validate_workflow(workflow, defs, exact=False) == []
    inputs = to_api_prompt(workflow, defs, exact=False)[str(train["id"])]["inputs"]
    assert inputs["overwrite"] is False and inputs["resume"] is True and inputs["seed"] == 0
    assert inputs["output_name"] == "person" and inputs["steps"] == 1000
    assert inspect.signature(TrainTalkingPoseLoRA.train).parameters["overwrite"].default is False


# ------------------------------------------------------------------------------------------ the checker itself
def broken(name, change):
    changed = copy.deepcopy(load(WORKFLOW_DIR / name))
    change(changed)
    return changed


def _sampler(w):
    return next(n for n in w["nodes"] if n["type"] == "TalkingPoseClosedLoopSampler")


def _drop_control_value(w):
    del _sampler(w)["widgets_values"][1]  # "fixed" gone: steps shifts onto the control slot


def _steps_out_of_range(w):
    _sampler(w)["widgets_values"][2] = 0


def _unknown_type(w):
    next(n for n in w["nodes"] if n["type"] == "TalkingPoseExtract")["type"] = "TalkingPoseExtractor"


def _wrong_link_type(w):
    # Feed the sampler's pose_images from the VAE loader (VAE into IMAGE).
    sampler = _sampler(w)
    slot = next(i for i, x in enumerate(sampler["inputs"]) if x["name"] == "pose_images")
    vae = next(n for n in w["nodes"] if n["type"] == "VAELoader")
    link = next(link for link in w["links"] if link[0] == sampler["inputs"][slot]["link"])
    origin = next(n for n in w["nodes"] if n["id"] == link[1])
    origin["outputs"][link[2]]["links"].remove(link[0])
    link[1], link[2], link[5] = vae["id"], 0, "VAE"
    vae["outputs"][0]["links"].append(link[0])


def _unlinked_required_input(w):
    sampler = _sampler(w)
    inp = next(x for x in sampler["inputs"] if x["name"] == "appearance")
    w["links"] = [link for link in w["links"] if link[0] != inp["link"]]
    for n in w["nodes"]:
        for out in n.get("outputs") or []:
            if out.get("links") and inp["link"] in out["links"]:
                out["links"].remove(inp["link"])
    inp["link"] = None


def _bad_combo(w):
    next(n for n in w["nodes"] if n["type"] == "TalkingPoseAppearanceEncode")["widgets_values"][2] = "squash"


def _renamed_input(w):
    next(x for x in _sampler(w)["inputs"] if x["name"] == "pose_images")["name"] = "poses"


def _dangling_link(w):
    w["links"].pop()


def _train_seed_with_a_control_value(w):
    # Saved as if the frontend had given the seed a control_after_generate widget: the node declares it False.
    train = next(n for n in w["nodes"] if n["type"] == "TalkingPoseTrainLoRA")
    train["widgets_values"].insert(-2, "fixed")


def _lora_not_a_file(w):
    next(n for n in w["nodes"] if n["type"] == "TalkingPoseLoadLoRA")["widgets_values"][0] = "person"


def _vhs_bad_format_widget(w):
    next(n for n in w["nodes"] if n["type"] == "VHS_VideoCombine")["widgets_values"]["crf"] = 500


def _frame_rate_from_an_int(w):
    # VHS_VideoCombine.frame_rate (a FLOAT widget turned into a socket) fed from Video Info's loaded_frame_count (INT).
    combine = next(n for n in w["nodes"] if n["type"] == "VHS_VideoCombine")
    link_id = next(x for x in combine["inputs"] if x["name"] == "frame_rate")["link"]
    link = next(link for link in w["links"] if link[0] == link_id)
    info = next(n for n in w["nodes"] if n["id"] == link[1])
    info["outputs"][link[2]]["links"].remove(link_id)
    link[2] = next(i for i, o in enumerate(info["outputs"]) if o["name"].startswith("loaded_frame_count"))
    link[5] = "INT"
    info["outputs"][link[2]]["links"] = (info["outputs"][link[2]]["links"] or []) + [link_id]


def _no_frames_per_batch(w):
    next(n for n in w["nodes"] if n["type"] == "VHS_BatchManager")["widgets_values"]["frames_per_batch"] = 0


def _empty_note(w):
    next(n for n in w["nodes"] if n["type"] == "Note")["widgets_values"] = [""]


def _stale_node_inputs(w):
    sampler = _sampler(w)
    sampler["inputs"] = [x for x in sampler["inputs"] if x["name"] != "state"]
    for link in w["links"]:  # later slots moved up by one
        if link[3] == sampler["id"]:
            link[4] = next(i for i, x in enumerate(sampler["inputs"]) if x.get("link") == link[0])


BREAKAGES = [
    ("1 Animate a photo (core nodes).json", _drop_control_value, "control_after_generate"),
    ("1 Animate a photo (core nodes).json", _steps_out_of_range, "below the minimum"),
    ("1 Animate a photo (core nodes).json", _unknown_type, "does not exist"),
    ("1 Animate a photo (core nodes).json", _wrong_link_type, "takes 'IMAGE'"),
    ("1 Animate a photo (core nodes).json", _unlinked_required_input, "'appearance' (TALKINGPOSE_APPEARANCE) is not connected"),
    ("1 Animate a photo (core nodes).json", _bad_combo, "'squash' is not one of"),
    ("1 Animate a photo (core nodes).json", _renamed_input, "'poses' is not an input"),
    ("1 Animate a photo (core nodes).json", _dangling_link, "does not exist"),
    ("1 Animate a photo (core nodes).json", _stale_node_inputs, "input 'state' (TALKINGPOSE_STATE) is missing"),
    ("4 Personalize - train a LoRA.json", _train_seed_with_a_control_value, "1 value(s) more than the node's widgets"),
    ("5 Personalize - render with the LoRA.json", _lora_not_a_file, "lora='person' is not a file name ending in"),
    ("2 Animate a photo (VideoHelperSuite).json", _vhs_bad_format_widget, "crf=500 is above the maximum 100"),
    ("2 Animate a photo (VideoHelperSuite).json", _frame_rate_from_an_int, "gives 'INT' but VHS_VideoCombine.frame_rate takes 'FLOAT'"),
    ("3 Long video in chunks.json", _no_frames_per_batch, "frames_per_batch=0 is below the minimum 1"),
    ("3 Long video in chunks.json", _empty_note, "widgets_values must hold the note's text"),
]


@pytest.mark.parametrize("name,change,message", BREAKAGES, ids=[b[1].__name__.strip("_") for b in BREAKAGES])
def test_a_broken_copy_is_caught(name, change, message, defs):
    errors = validate_workflow(broken(name, change), defs)
    assert errors, "the broken copy passed validation"
    assert any(message in e for e in errors), errors

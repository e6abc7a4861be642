"""The browser extension (web/): its pure logic is tested with Node's built-in test runner, run from here so
that the one pytest command covers it too; plus static checks of what ComfyUI will serve."""
import shutil
import subprocess

import pytest

from helpers import PACK_ROOT

WEB = PACK_ROOT / "web"
JS_TESTS = sorted((PACK_ROOT / "tests" / "web").glob("*.test.mjs"))
NODE = shutil.which("node")


def import_extension(sibling: str) -> str:
    """Node.js lines that import the extension file named by argv[1] as an ES module, with ComfyUI's app.js and
    api.js replaced by the test's `globalThis.__tp_app` / `__tp_api` and its `sibling` module found beside it."""
    return f"""
const stub = (name) => "data:text/javascript," + encodeURIComponent(`export const ${{name}} = globalThis.__tp_${{name}};`);
const {{ readFileSync }} = await import("node:fs");
const {{ pathToFileURL }} = await import("node:url");
const path = process.argv[1];
const source = readFileSync(path, "utf8")
  .replace('"../../scripts/app.js"', JSON.stringify(stub("app")))
  .replace('"../../scripts/api.js"', JSON.stringify(stub("api")))
  .replace('"./{sibling}"', JSON.stringify(new URL("{sibling}", pathToFileURL(path)).href));
await import("data:text/javascript," + encodeURIComponent(source));
"""


def test_js_tests_exist():
    assert JS_TESTS, "no tests/web/*.test.mjs found"


@pytest.mark.skipif(NODE is None, reason="Node.js (`node`) is not on PATH; the web/ tests need Node 18 or newer")
def test_node_test_runner_passes():
    result = subprocess.run(
        [NODE, "--test", *map(str, JS_TESTS)],
        cwd=PACK_ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, f"node --test failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    assert "# fail 0" in result.stdout


@pytest.mark.skipif(NODE is None, reason="Node.js (`node`) is not on PATH")
def test_extension_parses_and_registers():
    """Load web/talkingpose.js as an ES module against stand-ins for ComfyUI's app.js/api.js: it must parse,
    register one extension and subscribe to the sampler's event in setup()."""
    script = r"""
const registered = [], listened = [];
globalThis.__tp_app = { registerExtension: (e) => registered.push(e), canvas: { onDrawForeground: null } };
globalThis.__tp_api = { addEventListener: (type) => listened.push(type) };
""" + import_extension("progress_format.js") + r"""
if (registered.length !== 1) throw new Error("expected one registerExtension call, got " + registered.length);
const ext = registered[0];
ext.setup();
console.log(JSON.stringify({ name: ext.name, listened, hooked: typeof globalThis.__tp_app.canvas.onDrawForeground }));
"""
    result = subprocess.run(
        [NODE, "--input-type=module", "-e", script, str(WEB / "talkingpose.js")],
        cwd=PACK_ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.strip().splitlines()[-1]
    assert '"name":"TalkingPose.progress"' in out
    for event in ("talkingpose.progress", "execution_start", "execution_success", "executing",
                  "execution_interrupted", "execution_error"):
        assert f'"{event}"' in out
    assert '"hooked":"function"' in out


def test_web_folder_holds_no_tests():
    """ComfyUI loads every web/**/*.js as an extension module: test files must stay outside web/, and the pure
    module must stay free of imports (ComfyUI/DOM) so Node can run it."""
    served = sorted(p.relative_to(WEB).as_posix() for p in WEB.rglob("*.js"))
    assert {"progress_format.js", "talkingpose.js", "weights_format.js", "weights.js"} <= set(served)
    assert not [p for p in served if ".test." in p or p.startswith("tests/")]
    for pure in ("progress_format.js", "weights_format.js"):
        source = (WEB / pure).read_text(encoding="utf-8")
        assert "import " not in source, f"{pure} must stay free of imports (DOM/ComfyUI)"


def test_extension_uses_no_deprecated_frontend_api():
    """Frontend 1.58 warns on every read of LGraphNode.badgePosition (badges are always drawn top-right there, and
    1.49 puts ComfyUI's nodes' badges top-right too)."""
    for path in WEB.glob("*.js"):
        assert "badgePosition" not in path.read_text(encoding="utf-8"), path.name


@pytest.mark.skipif(NODE is None, reason="Node.js (`node`) is not on PATH")
def test_weights_extension_parses_and_checks_when_a_workflow_opens():
    """web/weights.js against stand-ins: it registers one extension that asks GET /talkingpose/weights when a
    workflow opens and warns once, naming the missing weights with the server's sentence."""
    script = r"""
const registered = [], fetched = [], toasts = [];
const status = { talkingpose: { installed: [], message: "No TalkingPose model is installed. run download" },
                 image_encoder: { file: "enc.safetensors", installed: true, message: "unused" } };
const loader = { type: "TalkingPoseModelLoader", pos: [0, 0], widgets: [{ name: "model", value: "TalkingPose/" }] };
globalThis.__tp_app = { registerExtension: (e) => registered.push(e), canvas: { onDrawForeground: null },
                        graph: { _nodes: [loader] }, extensionManager: { toast: { add: (t) => toasts.push(t) } } };
globalThis.__tp_api = { fetchApi: async (route) => { fetched.push(route); return { ok: true, json: async () => status }; } };
""" + import_extension("weights_format.js") + r"""
const ext = registered[0];
ext.setup();
await ext.afterConfigureGraph();
await ext.refreshComboInNodes();  // the same finding is not repeated
console.log(JSON.stringify({ n: registered.length, name: ext.name, fetched, toasts,
                             hooked: typeof globalThis.__tp_app.canvas.onDrawForeground }));
"""
    result = subprocess.run([NODE, "--input-type=module", "-e", script, str(WEB / "weights.js")],
                            cwd=PACK_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    import json

    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["n"] == 1 and out["name"] == "TalkingPose.weights" and out["hooked"] == "function"
    assert out["fetched"] == ["/talkingpose/weights", "/talkingpose/weights"]
    assert len(out["toasts"]) == 1 and out["toasts"][0]["detail"] == "No TalkingPose model is installed. run download"

// Screenshot a workflow opened in a running ComfyUI's own frontend (headless Chromium via playwright-core).
//
//   NODE_PATH=<folder with node_modules/playwright-core> node tools/screenshot_workflow.js \
//       --url http://127.0.0.1:8188 --workflow example_workflows/talkingpose_core_nodes.json --out docs/graph.png
//
// Needs: a ComfyUI with this pack (and VideoHelperSuite for that workflow) running at --url, Chromium at
// --chromium (default /usr/bin/chromium), and the npm package playwright-core. Installs nothing.
// Fails if a node of the workflow has no registered type in the frontend (a red "missing node" box).
// --serialized FILE also writes the graph as the frontend serializes it after loading (a round-trip check).
// Note: it sets two settings of the server's default user (Comfy.TutorialCompleted, Comfy.Minimap.Visible=false)
// so that no dialog or minimap covers the graph; point it at a throw-away ComfyUI (e.g. --base-directory /tmp/x).
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}

(async () => {
  const url = option("url", "http://127.0.0.1:8188");
  const workflowPath = option("workflow", "example_workflows/talkingpose_core_nodes.json");
  const workflow = JSON.parse(fs.readFileSync(workflowPath, "utf8"));
  const out = option("out", "docs/graph.png");
  const width = Number(option("width", "1600"));
  const height = Number(option("height", "900"));
  const serialized = option("serialized", null);

  // Skip the first-run template browser and the minimap so that neither covers the graph.
  for (const [id, value] of [["Comfy.TutorialCompleted", true], ["Comfy.Minimap.Visible", false]]) {
    await fetch(`${url}/settings/${id}`, { method: "POST", body: JSON.stringify(value) });
  }

  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "chromium-"));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: option("chromium", "/usr/bin/chromium"),
    headless: true,
    viewport: { width, height },
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
           "--no-first-run"],
  });
  try {
    const page = await browser.newPage();
    const problems = [];
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    await page.goto(url, { waitUntil: "networkidle" });
    await page.waitForFunction(() => window.app?.graph && window.LiteGraph?.registered_node_types, null, { timeout: 120000 });
    const result = await page.evaluate(async ([wf, name]) => {
      await window.app.loadGraphData(wf, true, true, name);
      const missing = wf.nodes.map((n) => n.type).filter((t) => !window.LiteGraph.registered_node_types[t]);
      const nodes = window.app.graph._nodes.map((n) => ({ id: n.id, type: n.type, title: n.title }));
      return { missing, nodes, serialized: window.app.graph.serialize() };
    }, [workflow, path.basename(workflowPath, ".json")]);
    if (serialized) fs.writeFileSync(serialized, JSON.stringify(result.serialized, null, 2));
    // Close any dialog (e.g. missing models: the files the workflow names are not installed on this host).
    await page.keyboard.press("Escape");
    await page.waitForTimeout(1500);
    fs.mkdirSync(path.dirname(out), { recursive: true });
    await page.screenshot({ path: out });
    console.log(JSON.stringify({ out, nodes: result.nodes.length, missing: result.missing, problems }, null, 1));
    if (result.missing.length) process.exitCode = 1;
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
})().catch((e) => { console.error(e); process.exit(1); });

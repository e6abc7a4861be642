// Open a workflow in a running ComfyUI's own frontend (headless Chromium via playwright-core), report where every
// node ends up once its media (Load Video / Load Image previews) has loaded, and take a screenshot.
//
//   NODE_PATH=<folder with node_modules/playwright-core> node tools/screenshot_workflow.js \
//       --url http://127.0.0.1:8188 --workflow "example_workflows/1 Animate a photo (core nodes).json" --out docs/graph.png
//
// Needs: a ComfyUI with this pack (and VideoHelperSuite for those workflows) running at --url, the files the
// workflow names in its input folder (a real driving video, so that the preview grows its node as it does for a
// user), Chromium at --chromium (default /usr/bin/chromium), and the npm package playwright-core. Installs nothing.
// Fails if a node of the workflow has no registered type in the frontend (a red "missing node" box), or, with
// --check-overlap, if any two nodes overlap after the media loaded (the report names them).
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

// Pairs of nodes whose rectangles [x, y, w, h] (title bar included) intersect.
function overlaps(nodes) {
  const found = [];
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      const [a, b] = [nodes[i].box, nodes[j].box];
      const w = Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]);
      const h = Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]);
      if (w > 0 && h > 0) found.push(`${nodes[i].title} (#${nodes[i].id}) and ${nodes[j].title} (#${nodes[j].id}) overlap by ${Math.round(w)}x${Math.round(h)}`);
    }
  }
  return found;
}

(async () => {
  const url = option("url", "http://127.0.0.1:8188");
  const workflowPath = option("workflow", "example_workflows/1 Animate a photo (core nodes).json");
  const workflow = JSON.parse(fs.readFileSync(workflowPath, "utf8"));
  const out = option("out", "docs/graph.png");
  const width = Number(option("width", "1600"));
  const height = Number(option("height", "900"));
  const serialized = option("serialized", null);
  const checkOverlap = process.argv.includes("--check-overlap");

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
    const loaded = await page.evaluate(async ([wf, name]) => {
      await window.app.loadGraphData(wf, true, true, name);
      return { missing: wf.nodes.map((n) => n.type).filter((t) => !window.LiteGraph.registered_node_types[t]) };
    }, [workflow, path.basename(workflowPath, ".json")]);
    // Close any dialog (e.g. missing models), then let the previews load: nodes grow to fit them.
    await page.keyboard.press("Escape");
    const media = await page.waitForFunction(() => {
      const videos = [...document.querySelectorAll("video")].filter((v) => v.src);  // extensions keep empty ones
      const images = [...document.querySelectorAll("img")].filter((i) => i.src);
      return videos.length > 0 && videos.every((v) => v.readyState >= 2) && images.every((i) => i.complete)
        ? videos.length : false;
    }, null, { timeout: 60000 }).then((h) => h.jsonValue()).catch(() => 0);
    await page.waitForTimeout(2000);
    const result = await page.evaluate(() => {
      const graph = window.app.graph;
      const nodes = graph._nodes.map((n) => {
        const b = n.getBounding();
        return { id: n.id, type: n.type, title: n.title, box: [b[0], b[1], b[2], b[3]].map(Math.round) };
      });
      // Fit the whole graph (nodes and groups) into the view.
      const boxes = nodes.map((n) => n.box).concat((graph._groups || []).map((g) => Array.from(g._bounding)));
      const [x0, y0] = [Math.min(...boxes.map((b) => b[0])), Math.min(...boxes.map((b) => b[1]))];
      const [x1, y1] = [Math.max(...boxes.map((b) => b[0] + b[2])), Math.max(...boxes.map((b) => b[1] + b[3]))];
      // Margins keep the graph clear of the frontend's side bar (left) and its tabs and Run bar (top).
      const canvas = window.app.canvas, [left, top, right, bottom] = [80, 110, 30, 30];
      const [w, h] = [canvas.canvas.clientWidth - left - right, canvas.canvas.clientHeight - top - bottom];
      const scale = Math.min(1, w / (x1 - x0), h / (y1 - y0));
      canvas.ds.scale = scale;
      canvas.ds.offset[0] = left / scale - x0 + (w / scale - (x1 - x0)) / 2;
      canvas.ds.offset[1] = top / scale - y0;
      canvas.setDirty(true, true);
      return { nodes, serialized: graph.serialize() };
    });
    if (serialized) fs.writeFileSync(serialized, JSON.stringify(result.serialized, null, 2));
    await page.waitForTimeout(1500);
    fs.mkdirSync(path.dirname(out), { recursive: true });
    await page.screenshot({ path: out });
    const found = overlaps(result.nodes);
    console.log(JSON.stringify({ out, videos_loaded: media, missing: loaded.missing, overlaps: found, problems,
                                 nodes: result.nodes.map((n) => `#${n.id} ${n.type} ${n.box.join(",")}`) }, null, 1));
    if (loaded.missing.length || (checkOverlap && (found.length || !media))) process.exitCode = 1;
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
})().catch((e) => { console.error(e); process.exit(1); });

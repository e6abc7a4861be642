// TalkingPose for ComfyUI: missing weights named when a workflow opens, before Run.
//
// The frontend's missing-models panel lists only combo values that look like model files: it never sees Load
// TalkingPose Model's folder value ("TalkingPose/"), and it has no download for the image encoder that
// `cli.py download` converts into one file. So when a workflow opens (and when node definitions are refreshed)
// this asks the server (GET /talkingpose/weights, nodes/weights_status.py) what is installed, marks each loader
// whose value is missing with a red "weights missing" label above its title, and shows one warning naming
// what is missing, where it goes and the command that fetches it. The saved workflow is not changed.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { missingWeights } from "./weights_format.js";

const EXTENSION = "TalkingPose.weights";
const LABEL = "weights missing: see the warning (or README: Weights)";
const LABEL_STYLE = { bg: "rgba(185, 28, 28, 0.92)", fg: "#ffffff", height: 20, padding: 6, gap: 2, font: "12px sans-serif" };

let marked = new Map(); // node → message
let shownFor = null; // the warning text last shown, so a refresh does not repeat it

async function fetchStatus() {
    try {
        const response = await api.fetchApi("/talkingpose/weights");
        return response.ok ? await response.json() : null;
    } catch {
        return null; // an older server without the route: the node's own error still says it at Run
    }
}

function graphNodes() {
    const graph = app.rootGraph ?? app.graph;
    return (graph?._nodes ?? graph?.nodes ?? []).map((node) => ({
        node,
        type: node.comfyClass ?? node.type,
        values: Object.fromEntries((node.widgets ?? []).map((w) => [w.name, w.value])),
    }));
}

function warn(text) {
    const toast = app.extensionManager?.toast;
    if (toast?.add) toast.add({ severity: "warn", summary: "TalkingPose weights missing", detail: text });
    else console.warn(`[${EXTENSION}] ${text}`);
}

async function check() {
    const status = await fetchStatus();
    if (!status) return;
    const entries = graphNodes();
    const found = missingWeights(status, entries.map(({ type, values }) => ({ type, values })));
    marked = new Map(found.map(({ index, message }) => [entries[index].node, message]));
    const messages = [...new Set(found.map(({ message }) => message))];
    const text = messages.join("\n\n");
    if (text && text !== shownFor) warn(text);
    shownFor = text || null;
    app.canvas?.setDirty?.(true, false);
}

function drawLabels(ctx) {
    const titleHeight = globalThis.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
    const s = LABEL_STYLE;
    for (const node of marked.keys()) {
        if (!node.pos || !node.graph || node.graph !== app.canvas?.graph) continue;
        ctx.save();
        ctx.font = s.font;
        const w = Math.ceil(ctx.measureText(LABEL).width) + 2 * s.padding;
        const x = node.pos[0];
        const y = node.pos[1] - titleHeight - s.gap - s.height;
        ctx.fillStyle = s.bg;
        ctx.beginPath();
        if (typeof ctx.roundRect === "function") ctx.roundRect(x, y, w, s.height, 5);
        else ctx.rect(x, y, w, s.height);
        ctx.fill();
        ctx.fillStyle = s.fg;
        ctx.textBaseline = "middle";
        ctx.fillText(LABEL, x + s.padding, y + s.height / 2 + 1);
        ctx.restore();
    }
}

app.registerExtension({
    name: EXTENSION,
    setup() {
        const canvas = app.canvas;
        if (canvas && !canvas.__talkingPoseWeights) {
            canvas.__talkingPoseWeights = true;
            const previous = canvas.onDrawForeground;
            canvas.onDrawForeground = function (ctx) {
                const result = previous?.apply(this, arguments);
                if (marked.size > 0) drawLabels(ctx);
                return result;
            };
        }
    },
    async afterConfigureGraph() {
        shownFor = null; // another workflow: say it again
        await check();
    },
    async refreshComboInNodes() {
        await check(); // "Refresh node definitions" (R): weights may have arrived
    },
});

// TalkingPose for ComfyUI: per-frame progress of the Closed-Loop Sampler, shown on the node.
//
// The sampler sends "talkingpose.progress" {node, frame, frames, s_per_frame, eta_s} after every frame.
// A status pill is drawn just above the node's title bar:
//   frame 12/120 · 2.35 s/frame · ETA 4:13      (while running, with a fill for the share done)
//   done · 120 frames · avg 2.35 s/frame         (after the last frame / when the run ends)
//   cancelled at frame 12/120                    (the run was interrupted)
//   failed after frame 12/120                    (the run stopped with an error)
// It sits in the row of the node's badges (one row higher when it would run into them, below the node when
// another node is in the way: placeStatus) and is drawn from
// the canvas' foreground hook: it changes neither the node's size nor the saved workflow, and it also shows
// with the "Nodes 2.0" (Vue) node design, where node draw callbacks are not called. Inside subgraphs the
// status is shown on the subgraph node at the root and on the sampler itself when the subgraph is open.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import {
    PROGRESS_EVENT,
    Phase,
    ProgressBoard,
    SAMPLER_TYPE,
    fractionDone,
    placeStatus,
    resolveDisplayNode,
    statusText,
} from "./progress_format.js";

const EXTENSION = "TalkingPose.progress";
const EVENTS = [
    PROGRESS_EVENT,
    "execution_start",
    "execution_success",
    "executing",
    "execution_interrupted",
    "execution_error",
];
const STYLE = {
    [Phase.RUNNING]: { bg: "rgba(17, 24, 39, 0.92)", fill: "rgba(37, 99, 235, 0.9)", fg: "#ffffff" },
    [Phase.DONE]: { bg: "rgba(21, 128, 61, 0.92)", fg: "#ffffff" },
    [Phase.CANCELLED]: { bg: "rgba(161, 98, 7, 0.92)", fg: "#ffffff" },
    [Phase.FAILED]: { bg: "rgba(185, 28, 28, 0.92)", fg: "#ffffff" },
};
// Same row, height, font and corners as LiteGraph's node badges (the frontend draws those at the right end).
const PILL_HEIGHT = 20;
const PILL_GAP = 2;
const PILL_PADDING = 6;
const PILL_RADIUS = 5;
const FONT = "12px sans-serif";

const board = new ProgressBoard();
/** The live statuses, for debugging in the browser console:
 *  (await import("/extensions/<pack folder>/talkingpose.js")).progressBoard.entries() */
export const progressBoard = board;
let drawFailed = false;

function nodeType(node) {
    return node?.comfyClass ?? node?.constructor?.comfyClass ?? node?.type;
}

function accept(node, kind) {
    if (kind === "container") return Boolean(node.subgraph || node.isSubgraphNode?.());
    return nodeType(node) === SAMPLER_TYPE || node.type === SAMPLER_TYPE;
}

function redraw() {
    app.canvas?.setDirty?.(true, false);
}

function pillPath(ctx, x, y, w, h, r) {
    ctx.beginPath();
    if (typeof ctx.roundRect === "function") ctx.roundRect(x, y, w, h, r);
    else ctx.rect(x, y, w, h);
}

function badgesWidth(ctx, node) {
    let width = 0;
    for (const badge of node.badges ?? []) {
        try {
            const b = typeof badge === "function" ? badge() : badge;
            if (b?.visible !== false && typeof b?.getWidth === "function") width += b.getWidth(ctx) + PILL_GAP;
        } catch {
            // a badge that cannot be measured takes no room
        }
    }
    return width;
}

// A node's box with its title bar, {x, y, w, h}.
function boxOf(node) {
    const titleHeight = globalThis.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
    const [w, h] = [node.width ?? node.size?.[0] ?? 0, node.height ?? node.size?.[1] ?? 0];
    return { x: node.pos[0], y: node.pos[1] - titleHeight, w, h: h + titleHeight };
}

function drawStatus(ctx, node, state, graph) {
    const text = statusText(state);
    if (!text || !node.pos) return;
    const style = STYLE[state.phase] ?? STYLE[Phase.RUNNING];
    ctx.save();
    ctx.font = FONT;
    const w = Math.ceil(ctx.measureText(text).width) + 2 * PILL_PADDING;
    // Badges sit at the right end of the row above the title bar (1.49 and 1.58 alike).
    const others = (graph?._nodes ?? graph?.nodes ?? []).filter((other) => other !== node && other.pos).map(boxOf);
    const { x, y } = placeStatus(boxOf(node), { w, h: PILL_HEIGHT }, badgesWidth(ctx, node), others, PILL_GAP);
    pillPath(ctx, x, y, w, PILL_HEIGHT, PILL_RADIUS);
    ctx.fillStyle = style.bg;
    ctx.fill();
    if (style.fill) {
        const share = fractionDone(state);
        if (share > 0) {
            ctx.save();
            ctx.clip();
            ctx.fillStyle = style.fill;
            ctx.fillRect(x, y, w * share, PILL_HEIGHT);
            ctx.restore();
        }
    }
    ctx.fillStyle = style.fg;
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    ctx.fillText(text, x + PILL_PADDING, y + PILL_HEIGHT / 2 + 1);
    ctx.restore();
}

function drawAll(ctx, canvas) {
    const root = app.rootGraph ?? app.graph;
    const shown = canvas.graph ?? root;
    if (!root || !shown) return;
    for (const [executionId, state] of board.entries()) {
        const node = resolveDisplayNode(executionId, root, shown, accept);
        if (node) drawStatus(ctx, node, state, shown);
    }
}

function hookCanvas(canvas) {
    if (!canvas || canvas.__talkingPoseProgress) return;
    canvas.__talkingPoseProgress = true;
    const previous = canvas.onDrawForeground;
    canvas.onDrawForeground = function (ctx, visibleArea) {
        const result = previous?.apply(this, arguments);
        if (board.states.size > 0) {
            try {
                drawAll(ctx, this);
            } catch (error) {
                if (!drawFailed) console.warn(`[${EXTENSION}] could not draw the progress status`, error);
                drawFailed = true;
            }
        }
        return result;
    };
}

app.registerExtension({
    name: EXTENSION,
    setup() {
        for (const type of EVENTS) {
            api.addEventListener(type, (event) => {
                if (board.handle(type, event.detail)) redraw();
            });
        }
        hookCanvas(app.canvas);
    },
    afterConfigureGraph() {
        // Another workflow was opened: its node ids mean other nodes.
        if (board.dropFinished()) redraw();
    },
});

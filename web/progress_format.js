// Pure logic of the TalkingPose progress display: formatting, the event → status state machine and the
// mapping of execution ids ("12" or "12:5" inside subgraphs) to graph nodes.
//
// No DOM and no ComfyUI imports, so `node --test tests/web/` can run it. ComfyUI also loads every .js file
// under web/ as an extension module; this one only has exports, so loading it on its own does nothing.

export const SAMPLER_TYPE = "TalkingPoseClosedLoopSampler";
export const PROGRESS_EVENT = "talkingpose.progress";

/** Phases of one sampler node's status. */
export const Phase = Object.freeze({
    RUNNING: "running",
    DONE: "done",
    CANCELLED: "cancelled",
    FAILED: "failed",
});

const UNKNOWN = "?";

function isFiniteNumber(value) {
    return typeof value === "number" && Number.isFinite(value);
}

/**
 * A duration as a clock: "m:ss" below one hour, "h:mm:ss" from one hour on (hours are not wrapped into
 * days). Rounded to the nearest second; negative, NaN, infinite or missing values give "?".
 */
export function formatClock(seconds) {
    if (!isFiniteNumber(seconds) || seconds < 0) return UNKNOWN;
    const total = Math.round(seconds);
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = total % 60;
    const ss = String(s).padStart(2, "0");
    if (h > 0) return `${h}:${String(m).padStart(2, "0")}:${ss}`;
    return `${m}:${ss}`;
}

/**
 * Seconds (per frame) in a readable precision: two decimals below 10 s ("2.35"), two significant digits
 * below 0.1 s ("0.042"), one decimal below 100 s ("12.3"), whole seconds above ("154"). Unit not included.
 */
export function formatSeconds(seconds) {
    if (!isFiniteNumber(seconds) || seconds < 0) return UNKNOWN;
    if (seconds === 0) return "0.00";
    if (seconds < 0.1) return String(Number(seconds.toPrecision(2)));
    // Decide the precision on the rounded value so that 9.996 becomes "10.0", not "10.00".
    if (Number(seconds.toFixed(2)) < 10) return seconds.toFixed(2);
    if (Number(seconds.toFixed(1)) < 100) return seconds.toFixed(1);
    return String(Math.round(seconds));
}

export function formatPerFrame(seconds) {
    return `${formatSeconds(seconds)} s/frame`;
}

function plural(n, word) {
    return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** The one-line status shown on the node for a state of the board (see ProgressBoard), or "" for none. */
export function statusText(state) {
    if (!state) return "";
    const { frame, frames } = state;
    switch (state.phase) {
        case Phase.RUNNING:
            return `frame ${frame}/${frames} · ${formatPerFrame(state.sPerFrame)} · ETA ${formatClock(state.etaS)}`;
        case Phase.DONE:
            return `done · ${plural(frame, "frame")} · avg ${formatPerFrame(state.sPerFrame)}`;
        case Phase.CANCELLED:
            return `cancelled at frame ${frame}/${frames}`;
        case Phase.FAILED:
            return `failed after frame ${frame}/${frames}`;
        default:
            return "";
    }
}

/** Fraction of the frames finished, 0..1 (for a progress fill). */
export function fractionDone(state) {
    if (!state || !(state.frames > 0)) return 0;
    return Math.min(1, Math.max(0, state.frame / state.frames));
}

/** The parts of an execution id: "12:5" → ["12", "5"]; null for a missing/empty id. */
export function splitExecutionId(id) {
    if (id === null || id === undefined) return null;
    const text = String(id).trim();
    if (text === "") return null;
    const parts = text.split(":");
    return parts.some((p) => p === "") ? null : parts;
}

/** The node's own id inside its (sub)graph: the last part of the execution id. */
export function localNodeId(id) {
    const parts = splitExecutionId(id);
    return parts ? parts[parts.length - 1] : null;
}

/** Whether an execution id belongs to a graph node id, directly ("7" ~ 7) or by its last part ("12:5" ~ 5). */
export function matchesNodeId(executionId, nodeId) {
    const local = localNodeId(executionId);
    return local !== null && nodeId !== null && nodeId !== undefined && local === String(nodeId);
}

/**
 * The node of the graph on screen that should show the status of `executionId`.
 *
 * Graphs and nodes only need LiteGraph's `graph.getNodeById(id)` and `node.subgraph` (subgraph nodes).
 *  - On the root graph: the node itself for "7"; for "12:5" the subgraph node 12 that contains the sampler.
 *  - Inside a subgraph on the path ("12:5" while subgraph 12 is open): node 5 there.
 *  - Otherwise, in any other graph, a node whose id is the last part of the execution id, if `accept`
 *    says it is a sampler (the graph shown is not on the path, e.g. a second instance of the subgraph).
 * `accept(node, kind)` filters candidates, kind "node" (the sampler itself) or "container" (a subgraph
 * node on the path); it guards against another workflow's node that happens to have the same id.
 */
export function resolveDisplayNode(executionId, rootGraph, currentGraph, accept = () => true) {
    const parts = splitExecutionId(executionId);
    if (!parts || !rootGraph) return null;
    const shown = currentGraph || rootGraph;
    let graph = rootGraph;
    for (let i = 0; i < parts.length && graph; i++) {
        const last = i === parts.length - 1;
        if (graph === shown) {
            const node = graph.getNodeById(parts[i]);
            if (!node) return null;
            return accept(node, last ? "node" : "container") ? node : null;
        }
        if (last) break;
        graph = graph.getNodeById(parts[i])?.subgraph ?? null;
    }
    const node = shown.getNodeById(parts[parts.length - 1]);
    return node && accept(node, "node") ? node : null;
}

function sanitizeProgress(data) {
    if (!data || typeof data !== "object") return null;
    const parts = splitExecutionId(data.node);
    if (!parts) return null;
    const frames = Math.floor(Number(data.frames));
    const frame = Math.floor(Number(data.frame));
    if (!Number.isFinite(frames) || frames < 1 || !Number.isFinite(frame) || frame < 0) return null;
    const num = (v) => (v === null || v === undefined || v === "" ? NaN : Number(v));
    return {
        node: parts.join(":"),
        frame: Math.min(frame, frames),
        frames,
        sPerFrame: num(data.s_per_frame),
        etaS: num(data.eta_s),
    };
}

/**
 * State machine: ComfyUI events in, one status per sampler (keyed by execution id) out.
 *
 *  talkingpose.progress    → running "frame k/N", done once k == N. Each event carries the whole status,
 *                            so it replaces what the node showed before (a finished earlier run too).
 *  execution_start         → a new prompt: statuses of earlier runs are dropped.
 *  execution_success,
 *  executing (null node)   → the prompt ended: running statuses become done.
 *  execution_interrupted   → running statuses become "cancelled at frame k/N".
 *  execution_error         → running statuses become "failed after frame k/N".
 *  executing (a node id)   → nothing.
 *
 * handle() returns true when a status changed (the canvas needs a redraw).
 */
export class ProgressBoard {
    constructor() {
        this.states = new Map();
    }

    get(executionId) {
        const parts = splitExecutionId(executionId);
        return parts ? this.states.get(parts.join(":")) ?? null : null;
    }

    text(executionId) {
        return statusText(this.get(executionId));
    }

    entries() {
        return [...this.states.entries()];
    }

    clear() {
        const changed = this.states.size > 0;
        this.states.clear();
        return changed;
    }

    /** Forget finished statuses (another workflow was opened); running ones stay. */
    dropFinished() {
        let changed = false;
        for (const [id, state] of this.states) {
            if (state.phase === Phase.RUNNING) continue;
            this.states.delete(id);
            changed = true;
        }
        return changed;
    }

    handle(type, detail) {
        switch (type) {
            case PROGRESS_EVENT:
                return this.progress(detail);
            case "execution_start":
                return this.clear();
            case "execution_success":
                return this.#finishRunning(Phase.DONE);
            case "executing":
                return detail === null || detail === undefined ? this.#finishRunning(Phase.DONE) : false;
            case "execution_interrupted":
                return this.#finishRunning(Phase.CANCELLED);
            case "execution_error":
                return this.#finishRunning(Phase.FAILED);
            default:
                return false;
        }
    }

    progress(data) {
        const p = sanitizeProgress(data);
        if (!p) return false;
        const phase = p.frame >= p.frames ? Phase.DONE : Phase.RUNNING;
        this.states.set(p.node, { ...p, phase });
        return true;
    }

    #finishRunning(phase) {
        let changed = false;
        for (const [id, state] of this.states) {
            if (state.phase !== Phase.RUNNING) continue;
            this.states.set(id, { ...state, phase, etaS: phase === Phase.DONE ? 0 : state.etaS });
            changed = true;
        }
        return changed;
    }
}

function intersects(a, b) {
    return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

/**
 * Where the status pill (w × h) of a node goes: the first of these spots that overlaps no other node —
 * the row just above the title bar (where the frontend also draws the node's badges, right-aligned), the row
 * above that, then just below the node — else the first spot that fits beside the badges. `node` is the node's
 * box with its title bar {x, y, w, h}, `badges` the width the badges take at the right end of their row, and
 * `others` the boxes of the other nodes on the canvas.
 */
export function placeStatus(node, pill, badges, others, gap = 2) {
    const above = node.y - gap - pill.h;
    const clearOfBadges = pill.w <= node.w - badges - gap;
    const spots = [
        ...(clearOfBadges ? [{ x: node.x, y: above }] : []),
        { x: node.x, y: above - pill.h - gap },
        { x: node.x, y: node.y + node.h + gap },
    ];
    const free = spots.find((spot) => !others.some((box) => intersects({ ...spot, w: pill.w, h: pill.h }, box)));
    return free ?? spots[0];
}

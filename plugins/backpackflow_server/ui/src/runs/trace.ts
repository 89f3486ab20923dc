// A run's trace folded as it streams in: the steps (the timeline), each graph node's status,
// the edges taken, and the live totals. The same fold runs for a live run and for a finished
// one replayed from its stream, so a reload shows what watching live showed.
//
// It mutates in place and counts versions: a run of 50,000 events is folded in O(events), and
// the page re-renders once per batch of events (see useRunTrace), not once per event.
import type { EdgeConfig, RunDetail, TraceEvent } from "../api/types";
import { addDecimal } from "./decimal";

export type StepStatus = "running" | "succeeded" | "failed" | "canceled" | "paused";
/** A graph node's status: its latest step's, with "cache_hit" for a step the cache answered. */
export type NodeStatus = StepStatus | "cache_hit" | "pending";

export interface StepView {
  step: number;
  nodeId: string;
  nodeName: string | null;
  nodeType: string | null;
  parentStep: number | null;
  status: StepStatus;
  startedAt: number | null;
  endedAt: number | null;
  latencyMs: number | null;
  tokensInput: number;
  tokensOutput: number;
  cost: string;
  attempts: number;
  retries: number;
  fallbacks: { from: string; to: string; reason: string }[];
  cacheHit: boolean;
  costSaved: string;
  action: string | null;
  error: string | null;
  /** The seq of the step's first event (the timeline's order for nested steps). */
  firstSeq: number;
}

export interface Totals {
  tokensInput: number;
  tokensOutput: number;
  cost: string;
  costSaved: string;
  retries: number;
  fallbacks: number;
  cacheHits: number;
}

/** What a paused run asked: the interrupt's prompt and the JSON Schema of the answer. */
export interface Question {
  step: number | null;
  nodeId: string | null;
  prompt: string;
  schema: Record<string, unknown> | null;
}

const CANCELED_ERRORS = new Set(["CancelledError", "RunCanceled"]);

function record(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function int(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) ? Math.trunc(value) : 0;
}

function text(value: unknown): string | null {
  return typeof value === "string" ? value : null;
}

/** An edge's identity: its ends and its action (two edges may join the same two nodes). */
export function edgeKey(from: string, to: string, action: string | null | undefined = "default"): string {
  return `${from}\u2192${to}\u00b7${action || "default"}`;
}

/** The action an edge is labelled with: the one its source must return for it to be followed. */
export function edgeAction(edge: EdgeConfig): string {
  return typeof edge.condition === "string" && edge.condition ? edge.condition : "default";
}

export class RunTrace {
  readonly steps = new Map<number, StepView>();
  /** Steps in timeline order (by their first event). */
  readonly order: StepView[] = [];
  readonly events: TraceEvent[] = [];
  readonly nodeStatus = new Map<string, NodeStatus>();
  readonly takenEdges = new Set<string>();
  readonly totals: Totals = { tokensInput: 0, tokensOutput: 0, cost: "0", costSaved: "0", retries: 0, fallbacks: 0, cacheHits: 0 };
  status: string | null = null;
  startedAt: number | null = null;
  endedAt: number | null = null;
  question: Question | null = null;
  lastSeq = 0;
  version = 0;
  /** False for a trace seeded from a run's stored row until its marks (fallbacks, cache hits,
   * a question) are folded in: those figures are not known yet. */
  complete = true;

  private readonly incoming = new Map<string, EdgeConfig[]>();
  private readonly outgoing = new Map<string, EdgeConfig[]>();
  /** Per node: its latest step's end (seq and action), and the seq its latest step started at. */
  private readonly lastEnd = new Map<string, { seq: number; action: string }>();
  private readonly lastStart = new Map<string, number>();

  constructor(edges: EdgeConfig[] = [], private readonly keepEvents = true) {
    for (const edge of edges) {
      for (const [index, end] of [[this.incoming, edge.to], [this.outgoing, edge.from]] as const) {
        const list = index.get(end) ?? [];
        list.push(edge);
        index.set(end, list);
      }
    }
  }

  /** A finished run's trace from its stored row (GET /api/runs/{id}: its steps and totals),
   * so that a run of thousands of steps shows at once instead of after its whole stream was
   * replayed. The edges taken come from the steps' actions in the order the steps started and
   * ended. What the row does not hold (each fallback, the cost a cache hit saved, a question)
   * comes from `applyMarks`; the events themselves are paged in lazily (see EventPages). */
  static fromDetail(detail: RunDetail, edges: EdgeConfig[] = []): RunTrace {
    const trace = new RunTrace(edges, false);
    const at = (iso: string | null) => (iso ? Date.parse(iso) / 1000 : null);
    const steps = [...detail.steps].sort((a, b) => a.step - b.step);
    const moments: { time: number; end: boolean; step: StepView }[] = [];
    let retries = 0;
    for (const row of steps) {
      const step: StepView = {
        step: row.step,
        nodeId: row.node_id,
        nodeName: row.node_name,
        nodeType: row.node_type,
        parentStep: row.parent_step,
        status: row.status as StepStatus,
        startedAt: at(row.started_at),
        endedAt: at(row.finished_at),
        latencyMs: row.latency_ms,
        tokensInput: row.tokens_input,
        tokensOutput: row.tokens_output,
        cost: row.cost,
        attempts: row.attempts,
        retries: row.retries,
        fallbacks: [],
        cacheHit: row.cache_hit,
        costSaved: "0",
        action: row.action,
        error: row.error,
        firstSeq: 0,
      };
      retries += row.retries;
      trace.steps.set(step.step, step);
      trace.order.push(step);
      if (step.parentStep !== null) continue;
      trace.setNode(step);
      moments.push({ time: step.startedAt ?? 0, end: false, step });
      // a node_end (and so an action) only for a step that succeeded
      if (step.status === "succeeded") moments.push({ time: step.endedAt ?? step.startedAt ?? 0, end: true, step });
    }
    // the order the trace had: by time, an end before a start at the same instant
    moments.sort((a, b) => a.time - b.time || Number(b.end) - Number(a.end) || a.step.step - b.step.step);
    moments.forEach((moment, index) => {
      if (moment.end) trace.followed(moment.step.nodeId, moment.step.action ?? "default", index + 1);
      else trace.markTaken(moment.step.nodeId, index + 1);
    });
    trace.startedAt = at(detail.started_at);
    Object.assign(trace.totals, {
      tokensInput: detail.total_tokens_input,
      tokensOutput: detail.total_tokens_output,
      cost: detail.total_cost,
      retries,
    });
    trace.lastSeq = detail.last_seq;
    trace.complete = false;
    trace.finish(detail.status, at(detail.finished_at)); // a step a cancel stopped: canceled
    trace.version += 1;
    return trace;
  }

  /** The events of a seeded (finished) trace its stored row does not sum up: fallbacks and
   * cache hits (the cost saved). */
  static readonly MARK_TYPES = ["fallback", "cache_hit"] as const;

  applyMarks(events: Iterable<TraceEvent>): void {
    const types: readonly string[] = RunTrace.MARK_TYPES;
    for (const event of events) if (types.includes(event.type)) this.fold(event);
    this.complete = true;
    this.version += 1;
  }

  /** Fold events in seq order; events at or below the last seq are skipped (a reconnect). */
  apply(events: Iterable<TraceEvent>): void {
    let changed = false;
    for (const event of events) {
      if (event.seq <= this.lastSeq) continue;
      this.lastSeq = event.seq;
      if (this.keepEvents) this.events.push(event);
      this.fold(event);
      changed = true;
    }
    if (changed) this.version += 1;
  }

  private open(event: TraceEvent): StepView | null {
    if (event.step === null || event.step === undefined) return null;
    let step = this.steps.get(event.step);
    if (!step) {
      step = {
        step: event.step,
        nodeId: event.node_id ?? "?",
        nodeName: event.node_name,
        nodeType: null,
        parentStep: event.parent_step ?? null,
        status: "running",
        startedAt: event.timestamp,
        endedAt: null,
        latencyMs: null,
        tokensInput: 0,
        tokensOutput: 0,
        cost: "0",
        attempts: 0,
        retries: 0,
        fallbacks: [],
        cacheHit: false,
        costSaved: "0",
        action: null,
        error: null,
        firstSeq: event.seq,
      };
      this.steps.set(event.step, step);
      this.order.push(step);
      if (step.parentStep === null) this.nodeStatus.set(step.nodeId, "running");
    }
    return step;
  }

  private setNode(step: StepView): void {
    if (step.parentStep !== null) return; // nested steps (tool calls) are not graph nodes
    const status: NodeStatus = step.status === "succeeded" && step.cacheHit ? "cache_hit" : step.status;
    this.nodeStatus.set(step.nodeId, status);
  }

  private fold(event: TraceEvent): void {
    const payload = record(event.payload);
    const step = this.open(event);
    switch (event.type) {
      case "run_start":
        this.status = "running";
        this.startedAt = event.timestamp;
        return;
      case "run_end":
        this.status = text(payload.status) ?? this.status;
        this.endedAt = event.timestamp;
        return;
      case "llm_response": {
        const usage = record(payload.usage);
        const tokensIn = int(usage.input_tokens);
        const tokensOut = int(usage.output_tokens);
        const cost = text(payload.cost) ?? "0";
        this.totals.tokensInput += tokensIn;
        this.totals.tokensOutput += tokensOut;
        this.totals.cost = addDecimal(this.totals.cost, cost);
        if (step) {
          step.tokensInput += tokensIn;
          step.tokensOutput += tokensOut;
          step.cost = addDecimal(step.cost, cost);
        }
        return;
      }
      case "custom":
        if (payload.name === "interrupt") {
          const data = record(payload.data ?? payload);
          this.question = {
            step: event.step,
            nodeId: event.node_id,
            prompt: text(data.prompt) ?? "",
            schema: data.schema && typeof data.schema === "object" ? (data.schema as Record<string, unknown>) : null,
          };
          this.status = "paused";
          if (step) {
            step.status = "paused";
            this.setNode(step);
          }
        }
        return;
      default:
        break;
    }
    if (!step) return;
    switch (event.type) {
      case "node_start": {
        step.startedAt = event.timestamp;
        step.nodeType = text(payload.node_type) ?? step.nodeType;
        if (this.status === null || this.status === "paused") this.status = "running";
        if (step.parentStep === null) this.markTaken(step.nodeId, event.seq);
        break;
      }
      case "node_end":
        if (step.status !== "failed" && step.status !== "canceled") step.status = "succeeded";
        step.endedAt = event.timestamp;
        step.latencyMs = typeof payload.duration_ms === "number" ? payload.duration_ms : null;
        step.action = payload.action === null || payload.action === undefined ? null : String(payload.action);
        if (step.parentStep === null) this.followed(step.nodeId, step.action ?? "default", event.seq);
        this.setNode(step);
        break;
      case "error": {
        const type = text(payload.error_type);
        step.status = type && CANCELED_ERRORS.has(type) ? "canceled" : "failed";
        step.endedAt = step.endedAt ?? event.timestamp;
        const message = text(payload.error) ?? "";
        step.error = type ? `${type}: ${message}` : message || "error";
        this.setNode(step);
        break;
      }
      case "exec_complete":
        step.attempts = int(payload.attempts) || step.attempts;
        break;
      case "retry":
        step.retries += 1;
        this.totals.retries += 1;
        break;
      case "fallback":
        step.fallbacks.push({
          from: `${text(payload.from_provider) ?? "?"}/${text(payload.from_model) ?? "?"}`,
          to: `${text(payload.to_provider) ?? "?"}/${text(payload.to_model) ?? "?"}`,
          reason: text(payload.reason) ?? "",
        });
        this.totals.fallbacks += 1;
        break;
      case "cache_hit": {
        const saved = text(payload.cost_saved) ?? "0";
        step.cacheHit = true;
        step.costSaved = addDecimal(step.costSaved, saved);
        this.totals.costSaved = addDecimal(this.totals.costSaved, saved);
        this.totals.cacheHits += 1;
        break;
      }
      case "tool_request":
        if (step.parentStep !== null) step.nodeType = "tool";
        break;
      case "tool_response":
        if (step.parentStep !== null) {
          const error = payload.error;
          step.status = error ? "failed" : "succeeded";
          step.error = error ? String(error) : null;
          step.endedAt = event.timestamp;
          step.latencyMs = typeof payload.duration_ms === "number" ? payload.duration_ms : null;
        }
        break;
      default:
        break;
    }
  }

  /** A node ended returning ``action`` (its node_end): the runner follows every edge labelled
   * with that action and no `when` condition (as the kernel's _follow does), so they are taken
   * now, whatever runs next (parallel branches, a join waiting for other predecessors). */
  private followed(node: string, action: string, seq: number): void {
    this.lastEnd.set(node, { seq, action });
    for (const edge of this.outgoing.get(node) ?? []) {
      if (edgeAction(edge) === action && (edge.when === undefined || edge.when === null)) {
        this.takenEdges.add(edgeKey(edge.from, edge.to, action));
      }
    }
  }

  /** A node started: an edge into it labelled with the action its source last returned and
   * carrying a `when` condition was followed if that source ended since this node last started
   * (the condition held: the trace records no evaluation, only that the target ran). */
  private markTaken(node: string, seq: number): void {
    const since = this.lastStart.get(node) ?? 0;
    for (const edge of this.incoming.get(node) ?? []) {
      if (edge.when === undefined || edge.when === null) continue;
      const ended = this.lastEnd.get(edge.from);
      if (ended !== undefined && ended.seq > since && ended.action === edgeAction(edge)) {
        this.takenEdges.add(edgeKey(edge.from, node, ended.action));
      }
    }
    this.lastStart.set(node, seq);
  }

  /** Close the run with the stream's final summary (a run that ended without run_end). */
  finish(status: string, finishedAt: number | null): void {
    if (this.status !== status || (finishedAt !== null && this.endedAt === null)) {
      this.status = status;
      if (finishedAt !== null && this.endedAt === null) this.endedAt = finishedAt;
      if (status === "canceled") {
        for (const step of this.order) {
          if (step.status === "running") {
            step.status = "canceled";
            this.setNode(step);
          }
        }
      }
      this.version += 1;
    }
  }
}

/** Milliseconds from start to end (or to ``now`` while running), for the summary header. */
export function elapsedMs(startedAt: number | null, endedAt: number | null, now: number): number | null {
  if (startedAt === null) return null;
  return Math.max(0, ((endedAt ?? now) - startedAt) * 1000);
}

export function formatMs(ms: number | null): string {
  if (ms === null) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60_000);
  return `${minutes} min ${Math.round((ms % 60_000) / 1000)} s`;
}

import { describe, expect, it } from "vitest";
import type { RunDetail, RunStep, TraceEvent, TracePage } from "../api/types";
import { EventPages } from "./eventPages";
import { PARALLEL_EDGES } from "./testFlows";
import { edgeKey, RunTrace } from "./trace";

function row(step: number, node: string, start: number, end: number | null, extra: Partial<RunStep> = {}): RunStep {
  const iso = (t: number | null) => (t === null ? null : new Date(t * 1000).toISOString());
  return {
    id: `s${step}`, run_id: "r", step, node_id: node, node_name: node, node_type: "echo", namespace: null,
    status: "succeeded", started_at: iso(start), finished_at: iso(end), latency_ms: 5, tokens_input: 2,
    tokens_output: 1, cost: "0.1", attempts: 1, retries: 0, cache_hit: false, action: null, error: null,
    parent_step: null, ...extra,
  };
}

function detail(steps: RunStep[], extra: Partial<RunDetail> = {}): RunDetail {
  return {
    id: "r", workflow_id: "w", workflow_name: "w", workflow_version: 1, triggered_by: null, status: "succeeded",
    input_vars: {}, created_at: "2026-01-01T00:00:00Z", started_at: "2026-01-01T00:00:00Z",
    finished_at: "2026-01-01T00:01:00Z", total_tokens_input: 8, total_tokens_output: 4, total_cost: "0.4",
    total_latency_ms: 20, error_summary: null, event_count: 40, last_seq: 40, outputs: {}, forked_from: null,
    steps, ...extra,
  };
}

describe("a finished run seeded from its stored row", () => {
  it("shows its steps, totals and the edges its actions took, parallel branches too", () => {
    const edges = [
      ...PARALLEL_EDGES,
      { from: "join", to: "yes", condition: "yes" },
      { from: "join", to: "no", condition: "no", when: "x > 1" },
    ];
    const trace = RunTrace.fromDetail(
      detail([
        row(1, "split", 1, 2),
        row(2, "left", 3, 6),
        row(3, "right", 3, 5, { retries: 2, cache_hit: true }),
        row(4, "join", 7, 8, { action: "yes" }),
        row(5, "yes", 9, 10),
      ]),
      edges,
    );
    expect(trace.order.map((step) => step.nodeId)).toEqual(["split", "left", "right", "join", "yes"]);
    expect(trace.nodeStatus.get("right")).toBe("cache_hit");
    expect(trace.nodeStatus.get("no")).toBeUndefined();
    expect(trace.totals).toMatchObject({ tokensInput: 8, cost: "0.4", retries: 2 });
    expect([...trace.takenEdges].sort()).toEqual(
      [edgeKey("split", "left"), edgeKey("split", "right"), edgeKey("left", "join"), edgeKey("right", "join"), edgeKey("join", "yes", "yes")].sort(),
    );
    expect(trace.complete).toBe(false); // fallbacks and cache savings not read yet
    const mark = (type: string, step: number, payload: unknown): TraceEvent => ({
      id: type, seq: 9, timestamp: 3, run_id: "r", step, node_id: "right", node_name: "right", namespace: null, type, payload, parent_step: null,
    });
    trace.applyMarks([mark("cache_hit", 3, { cost_saved: "0.25" }), mark("fallback", 3, { from_provider: "a", to_provider: "b" })]);
    expect(trace.complete).toBe(true);
    expect(trace.totals).toMatchObject({ cacheHits: 1, costSaved: "0.25", fallbacks: 1, cost: "0.4" });
    expect(trace.steps.get(3)?.fallbacks[0].to).toBe("b/?");
  });

  it("marks the step a cancel stopped as canceled", () => {
    const trace = RunTrace.fromDetail(detail([row(1, "a", 1, null, { status: "running" })], { status: "canceled" }));
    expect(trace.nodeStatus.get("a")).toBe("canceled");
  });
});

describe("EventPages", () => {
  const events = (from: number, to: number): TraceEvent[] =>
    Array.from({ length: to - from + 1 }, (_, i) => ({ id: `e${from + i}`, seq: from + i, timestamp: 0, run_id: "r", step: null, node_id: null, node_name: null, namespace: null, type: "log", payload: {}, parent_step: null }));

  it("fetches only the page in view, by seq when the seqs have no gap", async () => {
    const asked: number[] = [];
    const fetchPage = async (after: number, limit: number): Promise<TracePage> => {
      asked.push(after);
      const items = events(after + 1, Math.min(after + limit, 2500));
      return { run_id: "r", items, next_after: items[items.length - 1].seq, has_more: items.length === limit };
    };
    let loads = 0;
    const pages = new EventPages(2500, true, fetchPage, () => (loads += 1));
    expect(pages.get(2400)).toBeUndefined();
    await Promise.resolve();
    await Promise.resolve();
    expect(asked).toEqual([2000]);
    expect(pages.get(2400)?.seq).toBe(2401);
    expect(loads).toBe(1);
  });

  it("walks the pages in order when the seqs have gaps", async () => {
    const asked: number[] = [];
    const fetchPage = async (after: number, limit: number): Promise<TracePage> => {
      asked.push(after);
      // seqs 1..1000, then 1101..2100
      const items = after === 0 ? events(1, limit) : events(after + 101, after + 100 + limit);
      return { run_id: "r", items, next_after: items[items.length - 1].seq, has_more: true };
    };
    const pages = new EventPages(2000, false, fetchPage, () => undefined);
    expect(pages.get(1500)).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(asked).toEqual([0]);
    expect(pages.get(1500)).toBeUndefined(); // now the page after it
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(asked).toEqual([0, 1000]);
    expect(pages.get(1500)?.seq).toBe(1601);
  });
});

import { describe, expect, it } from "vitest";
import type { TraceEvent } from "../api/types";
import { PARALLEL_EDGES } from "./testFlows";
import { edgeKey, elapsedMs, formatMs, RunTrace } from "./trace";

let seq = 0;
function event(type: string, step: number | null, nodeId: string | null, payload: unknown = {}, extra: Partial<TraceEvent> = {}): TraceEvent {
  seq += 1;
  return { id: `e${seq}`, seq, timestamp: 1000 + seq, run_id: "r", step, node_id: nodeId, node_name: nodeId, namespace: null, type, payload, parent_step: null, ...extra };
}

/** The events of an llm step, numbered in order (the extra ones after its node_start). */
function llmStep(step: number, node: string, cost: string, extra: TraceEvent[] = []): TraceEvent[] {
  const events = [
    event("node_start", step, node, { node_type: "llm" }),
    ...extra,
    event("llm_response", step, node, { usage: { input_tokens: 10, output_tokens: 4 }, cost }),
    event("exec_complete", step, node, { attempts: 1 }),
    event("node_end", step, node, { action: null, duration_ms: 12.5 }),
  ];
  return events.map((item) => {
    seq += 1;
    return { ...item, seq, id: `e${seq}` };
  });
}

const EDGES = [
  { from: "fetch", to: "summarize" },
  { from: "summarize", to: "decide" },
  { from: "decide", to: "deep", condition: "deep" },
  { from: "decide", to: "shallow", condition: "shallow" },
];

describe("RunTrace", () => {
  it("folds events into node statuses, taken edges and exact totals", () => {
    seq = 0;
    const trace = new RunTrace(EDGES);
    trace.apply([
      event("run_start", null, null),
      event("node_start", 1, "fetch", { node_type: "tool" }),
      event("node_end", 1, "fetch", { action: null, duration_ms: 3 }),
      ...llmStep(2, "summarize", "0.1"),
      ...llmStep(3, "decide", "0.2").map((item) => (item.type === "node_end" ? { ...item, payload: { action: "deep", duration_ms: 1 } } : item)),
    ]);
    expect(trace.nodeStatus.get("fetch")).toBe("succeeded");
    expect(trace.nodeStatus.get("decide")).toBe("succeeded");
    expect(trace.nodeStatus.get("deep")).toBeUndefined();
    expect([...trace.takenEdges]).toEqual([edgeKey("fetch", "summarize"), edgeKey("summarize", "decide"), edgeKey("decide", "deep", "deep")]);
    // 0.1 + 0.2 is 0.30000000000000004 in floats: the totals stay exact
    expect(trace.totals.cost).toBe("0.3");
    expect(trace.totals.tokensInput).toBe(20);
    expect(trace.order.map((step) => step.step)).toEqual([1, 2, 3]);

    trace.apply([event("node_start", 4, "deep", { node_type: "llm" })]);
    expect(trace.nodeStatus.get("deep")).toBe("running");
    expect(trace.takenEdges.has(edgeKey("decide", "deep", "deep"))).toBe(true);
    expect(trace.takenEdges.has(edgeKey("decide", "shallow", "shallow"))).toBe(false);
  });

  it("takes the edges the returned actions name, in parallel branches and joins too", () => {
    seq = 0;
    const edges = [
      ...PARALLEL_EDGES,
      { from: "right", to: "join", condition: "again" },
      { from: "join", to: "audit", condition: "check", when: "output.size > 3" },
      { from: "join", to: "done", condition: "check" },
    ];
    const trace = new RunTrace(edges);
    trace.apply([
      event("node_start", 1, "split"),
      event("node_end", 1, "split", { action: null }),
      // the two branches interleave; the join waits for both
      event("node_start", 2, "left"),
      event("node_start", 3, "right"),
      event("node_end", 3, "right", { action: null }),
      event("node_end", 2, "left", { action: "default" }),
      event("node_start", 4, "join"),
      event("node_end", 4, "join", { action: "check" }),
      event("node_start", 5, "done"),
    ]);
    const keys = (...list: [string, string, string?][]) => list.map(([from, to, action]) => edgeKey(from, to, action));
    expect([...trace.takenEdges].sort()).toEqual(
      keys(["split", "left"], ["split", "right"], ["left", "join"], ["right", "join"], ["join", "done", "check"]).sort(),
    );
    // a `when` edge counts once its target ran after the action that labels it
    trace.apply([event("node_start", 6, "audit")]);
    expect(trace.takenEdges.has(edgeKey("join", "audit", "check"))).toBe(true);
    expect(trace.takenEdges.has(edgeKey("right", "join", "again"))).toBe(false);
  });

  it("does not take a `when` edge whose source returned another action", () => {
    seq = 0;
    const trace = new RunTrace([
      { from: "a", to: "b", condition: "yes", when: "true" },
      { from: "c", to: "b" },
    ]);
    trace.apply([
      event("node_start", 1, "a"),
      event("node_end", 1, "a", { action: "no" }),
      event("node_start", 2, "c"),
      event("node_end", 2, "c", { action: null }),
      event("node_start", 3, "b"),
    ]);
    expect([...trace.takenEdges]).toEqual([edgeKey("c", "b")]);
  });

  it("shows failed, canceled, paused and cache-hit steps as such", () => {
    seq = 0;
    const trace = new RunTrace();
    trace.apply([
      event("node_start", 1, "boom"),
      event("error", 1, "boom", { error_type: "RuntimeError", error: "boom", phase: "exec" }),
      event("node_start", 2, "wait"),
      event("error", 2, "wait", { error_type: "CancelledError", error: "canceled", phase: "exec" }),
      event("node_start", 3, "ask"),
      event("custom", 3, "ask", { name: "interrupt", prompt: "Publish?", schema: { type: "object", properties: { approved: { type: "boolean" } } } }),
      ...llmStep(4, "cached", "0", [event("cache_hit", 4, "cached", { cost_saved: "0.0000050" })]),
    ]);
    expect(trace.nodeStatus.get("boom")).toBe("failed");
    expect(trace.steps.get(1)?.error).toBe("RuntimeError: boom");
    expect(trace.nodeStatus.get("wait")).toBe("canceled");
    expect(trace.nodeStatus.get("ask")).toBe("paused");
    expect(trace.question?.prompt).toBe("Publish?");
    expect(trace.nodeStatus.get("cached")).toBe("cache_hit");
    expect(trace.totals.costSaved).toBe("0.0000050");
    expect(trace.totals.cacheHits).toBe(1);
  });

  it("counts retries and fallbacks, from which provider to which", () => {
    seq = 0;
    const trace = new RunTrace();
    trace.apply(
      llmStep(1, "ask", "0.0000050", [
        event("retry", 1, "ask", { attempt: 1, error_type: "ServerError" }),
        event("fallback", 1, "ask", { from_provider: "flaky", from_model: "m1", to_provider: "offline", to_model: "m2", reason: "ServerError after retries" }),
      ]),
    );
    const step = trace.steps.get(1)!;
    expect(step.retries).toBe(1);
    expect(step.fallbacks).toEqual([{ from: "flaky/m1", to: "offline/m2", reason: "ServerError after retries" }]);
    expect(trace.totals).toMatchObject({ retries: 1, fallbacks: 1 });
  });

  it("skips events it has already folded (a reconnect replays from Last-Event-ID)", () => {
    seq = 0;
    const trace = new RunTrace();
    const events = llmStep(1, "ask", "0.5");
    trace.apply(events.slice(0, 3));
    const version = trace.version;
    trace.apply(events); // the first three again, then the rest
    expect(trace.totals.cost).toBe("0.5");
    expect(trace.events).toHaveLength(events.length);
    expect(trace.version).toBe(version + 1);
    trace.apply(events);
    expect(trace.version).toBe(version + 1); // nothing new: no re-render
  });

  it("marks running steps canceled when the stream ends canceled", () => {
    seq = 0;
    const trace = new RunTrace();
    trace.apply([event("run_start", null, null), event("node_start", 1, "slow")]);
    trace.finish("canceled", 2000);
    expect(trace.status).toBe("canceled");
    expect(trace.nodeStatus.get("slow")).toBe("canceled");
    expect(trace.endedAt).toBe(2000);
  });

  it("keeps nested steps (an agent's tool calls) off the graph", () => {
    seq = 0;
    const trace = new RunTrace();
    trace.apply([
      event("node_start", 1, "agent"),
      event("tool_request", 2, "agent", { tool: "read_file" }, { parent_step: 1 }),
      event("tool_response", 2, "agent", { tool: "read_file", duration_ms: 2 }, { parent_step: 1 }),
    ]);
    expect(trace.steps.get(2)).toMatchObject({ parentStep: 1, nodeType: "tool", status: "succeeded" });
    expect(trace.nodeStatus.get("agent")).toBe("running");
  });

  it("folds 50,000 events of 2,000 steps", () => {
    seq = 0;
    const trace = new RunTrace([], false);
    const events: TraceEvent[] = [];
    for (let step = 1; step <= 2000; step += 1) {
      events.push(event("node_start", step, `n${step % 7}`));
      for (let i = 0; i < 22; i += 1) events.push(event("log", step, `n${step % 7}`, { message: "x" }));
      events.push(event("llm_response", step, `n${step % 7}`, { usage: { input_tokens: 1, output_tokens: 1 }, cost: "0.000001" }));
      events.push(event("node_end", step, `n${step % 7}`, { duration_ms: 1 }));
    }
    trace.apply(events);
    expect(events).toHaveLength(50_000);
    expect(trace.order).toHaveLength(2000);
    expect(trace.totals.cost).toBe("0.002000");
  });
});

describe("elapsed time", () => {
  it("runs until the end, then stops", () => {
    expect(elapsedMs(100, null, 101.5)).toBe(1500);
    expect(elapsedMs(100, 100.25, 999)).toBe(250);
    expect(elapsedMs(null, null, 5)).toBeNull();
    expect(formatMs(250)).toBe("250 ms");
    expect(formatMs(1500)).toBe("1.5 s");
    expect(formatMs(125_000)).toBe("2 min 5 s");
  });
});

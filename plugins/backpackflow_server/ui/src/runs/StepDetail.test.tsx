import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { TraceEvent } from "../api/types";
import { StepDetailPane } from "./StepDetail";
import { RunTrace } from "./trace";

const MESSAGES = [{ role: "user", content: "Summarize the harbor news" }];
const DETAIL = {
  step: { step: 1, node_id: "ask", status: "succeeded", cost: "0.0000050", latency_ms: 12, attempts: 1 },
  input: null,
  output: "The harbor reopened.",
  has_output: true,
  messages: MESSAGES,
  response: { provider: "offline", model: "m1", text: "The harbor reopened.", cost: "0.0000050", finish_reason: "stop" },
  llm_calls: [
    { seq: 3, provider: "offline", model: "m1", messages: MESSAGES, params: {}, response: null },
    { seq: 6, provider: "offline", model: "m1", messages: MESSAGES, params: {}, response: { text: "The harbor reopened." } },
  ],
  reads: [],
  writes: [{ key: "ask", op: "pack", version: 1, value_summary: '"The harbor reopened."' }],
  retries: [{ attempt: 1, error_type: "ServerError", provider: "flaky" }],
  fallbacks: [],
  cache_hits: [],
  cost_saved: "0",
  errors: [],
  tool_calls: [],
  interrupt: null,
  events: [{ seq: 2, type: "node_start" }],
  events_truncated: false,
};

function event(seq: number, type: string, payload: unknown = {}): TraceEvent {
  return { id: `e${seq}`, seq, timestamp: seq, run_id: "r1", step: 1, node_id: "ask", node_name: "ask", namespace: null, type, payload, parent_step: null };
}

afterEach(() => vi.unstubAllGlobals());

describe("StepDetailPane", () => {
  it("shows the figures, then the prompt, response, Backpack and raw JSON tabs", async () => {
    const fetch = vi.fn(async () => new Response(JSON.stringify(DETAIL)));
    vi.stubGlobal("fetch", fetch);
    const trace = new RunTrace();
    trace.apply([
      event(2, "node_start", { node_type: "llm" }),
      event(4, "retry", { attempt: 1 }),
      event(5, "fallback", { from_provider: "flaky", from_model: "m1", to_provider: "offline", to_model: "m1", reason: "ServerError after retries" }),
      event(7, "llm_response", { usage: { input_tokens: 14, output_tokens: 9 }, cost: "0.0000050" }),
      event(8, "node_end", { duration_ms: 12 }),
    ]);
    render(
      <QueryClientProvider client={new QueryClient()}>
        <StepDetailPane runId="r1" step={trace.steps.get(1)!} />
      </QueryClientProvider>,
    );
    expect(fetch).toHaveBeenCalledWith("/api/runs/r1/steps/1", expect.anything());
    expect(screen.getByTestId("step-fallbacks")).toHaveTextContent("flaky/m1 → offline/m1");
    expect(await screen.findByText("attempt 1: ServerError (flaky)")).toBeInTheDocument();
    expect(screen.getByTestId("step-cost")).toHaveTextContent("$0.0000050");
    expect(screen.getAllByText("Summarize the harbor news")).toHaveLength(2); // both calls
    const user = userEvent.setup();
    await user.click(screen.getByRole("tab", { name: "Response" }));
    expect(screen.getByRole("tabpanel")).toHaveTextContent("finish reason");
    await user.click(screen.getByRole("tab", { name: "Backpack" }));
    expect(screen.getByRole("tabpanel")).toHaveTextContent('ask pack v1: "The harbor reopened."');
    await user.click(screen.getByRole("tab", { name: "Raw JSON" }));
    expect(screen.getByRole("tabpanel")).toHaveTextContent('"type": "node_start"');
  });
});

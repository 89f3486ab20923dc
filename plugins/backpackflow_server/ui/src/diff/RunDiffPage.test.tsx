import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render, screen, within } from "@testing-library/react";
import { MemoryRouter, Route, Routes } from "react-router-dom";
import { afterEach, describe, expect, it, vi } from "vitest";
import RunDiffPage from "./RunDiffPage";

function side(step: number, node: string, prompt: string, output: string, cost: string) {
  return {
    step, node_id: node, node_name: node, node_type: "llm", parent_step: null, status: "succeeded",
    prompt: [{ role: "user", content: prompt }], output, model: "offline/m1",
    tokens_input: 10, tokens_output: 4, cost, latency_ms: 12, cache_hit: false, action: null, error: null,
  };
}

const run = (id: string, version: number) => ({
  id, workflow_id: "w1", workflow_name: "demo", workflow_version: version, status: "succeeded", total_cost: "0.1",
});

const COMPARE = {
  a: run("ra", 1),
  b: run("rb", 2),
  same_workflow: true,
  totals: {
    a: { status: "succeeded", steps: 2, tokens_input: 10, tokens_output: 4, cost: "0.1", latency_ms: 20 },
    b: { status: "succeeded", steps: 2, tokens_input: 12, tokens_output: 4, cost: "0.12", latency_ms: 25 },
    delta: { tokens_input: 2, tokens_output: 0, cost: "0.02", latency_ms: 5 },
  },
  steps: [
    { node_id: "ask", occurrence: 1, a: side(1, "ask", "harbor?", "The harbor", "0.1"), b: side(1, "ask", "bridge?", "The bridge", "0.12"), changed: ["prompt", "output", "cost"] },
    { node_id: "extra", occurrence: 1, a: null, b: side(2, "extra", "more?", "More", "0") , changed: [] },
  ],
};

afterEach(() => vi.unstubAllGlobals());

describe("RunDiffPage", () => {
  it("shows two runs side by side, the differing fields marked, a step only one run has", async () => {
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string) => {
        if (url.startsWith("/api/runs/ra/compare/rb")) return new Response(JSON.stringify(COMPARE));
        if (url.startsWith("/api/runs/ra")) return new Response(JSON.stringify({ ...run("ra", 1), steps: [] }));
        return new Response(JSON.stringify([]));
      }),
    );
    render(
      <QueryClientProvider client={new QueryClient()}>
        <MemoryRouter initialEntries={["/runs/diff?a=ra&b=rb"]}>
          <Routes>
            <Route path="/runs/diff" element={<RunDiffPage />} />
          </Routes>
        </MemoryRouter>
      </QueryClientProvider>,
    );
    const ask = await screen.findByRole("row", { name: /^ask: differs/ });
    expect(within(ask).getByText("prompt, output, cost")).toBeInTheDocument();
    expect(within(ask).getByText(/harbor\?/)).toBeInTheDocument();
    expect(within(ask).getByText(/bridge\?/)).toBeInTheDocument();
    const extra = screen.getByRole("row", { name: /^extra: only in b/ });
    expect(within(extra).getByText("not in run a")).toBeInTheDocument();
    expect(screen.getByTestId("diff-delta")).toHaveTextContent("tokens +2 in / 0 out · cost +$0.02 · latency +5 ms");
  });
});

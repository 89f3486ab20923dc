// The run view's requests beyond ../api: a step's detail, time travel, answers, forks, diffs.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { ApiError, getJson, sendJson } from "../api/client";
import { keys } from "../api/hooks";
import type { RunDetail, RunStep, RunSummary, Workflow } from "../api/types";

export interface LlmCall {
  seq: number | null;
  provider: string | null;
  model: string | null;
  messages: unknown;
  params: unknown;
  response: Record<string, unknown> | null;
}

export interface StepDetail {
  step: RunStep;
  input: unknown;
  output: unknown;
  has_output: boolean;
  messages: unknown;
  response: Record<string, unknown> | null;
  llm_calls: LlmCall[];
  reads: Record<string, unknown>[];
  writes: Record<string, unknown>[];
  retries: Record<string, unknown>[];
  fallbacks: Record<string, unknown>[];
  cache_hits: Record<string, unknown>[];
  cost_saved: string;
  errors: Record<string, unknown>[];
  tool_calls: Record<string, unknown>[];
  interrupt: unknown;
  events: Record<string, unknown>[];
  events_truncated: boolean;
}

export interface CommitInfo {
  commit_id: string;
  seq: number;
  parent_id: string | null;
  timestamp: number;
  node_id: string | null;
  node_name: string | null;
  namespace: string | null;
  op: "pack" | "append" | "delete";
  key: string;
  version: number;
  tags: string[];
  step: number | null;
  inherited: boolean;
}

export interface CommitPage {
  run_id: string;
  status: string;
  forked_from: Record<string, unknown> | null;
  last_seq: number;
  items: CommitInfo[];
  next_after: number;
  has_more: boolean;
}

export interface RunState {
  run_id: string;
  commit_id: string | null;
  seq: number;
  state: Record<string, unknown>;
  items: Record<string, Record<string, unknown>>;
}

export interface RunDiff {
  run_id: string;
  from_commit: string | null;
  from_seq: number;
  to_commit: string | null;
  to_seq: number;
  added: Record<string, unknown>;
  removed: Record<string, unknown>;
  modified: Record<string, { old: unknown; new: unknown }>;
}

export interface CompareSide {
  step: number;
  node_id: string;
  node_name: string | null;
  node_type: string | null;
  parent_step: number | null;
  status: string;
  prompt: unknown;
  output: unknown;
  model: string | null;
  tokens_input: number;
  tokens_output: number;
  cost: string;
  latency_ms: number | null;
  cache_hit: boolean;
  action: string | null;
  error: string | null;
}

export interface ComparePair {
  node_id: string | null;
  occurrence: number;
  a: CompareSide | null;
  b: CompareSide | null;
  changed: string[];
}

export interface RunTotals {
  status?: string;
  steps?: number;
  tokens_input: number;
  tokens_output: number;
  cost: string;
  latency_ms: number | null;
}

export interface RunCompare {
  a: RunSummary;
  b: RunSummary;
  same_workflow: boolean;
  totals: { a: RunTotals; b: RunTotals; delta: RunTotals };
  steps: ComparePair[];
}

const run = (id: string) => `/api/runs/${encodeURIComponent(id)}`;

/** The run's workflow (none once it was deleted: ``workflowId`` null). */
export function useRunWorkflow(workflowId: string | null) {
  return useQuery({
    queryKey: keys.workflow(workflowId ?? ""),
    queryFn: ({ signal }) => getJson<Workflow>(`/api/workflows/${encodeURIComponent(workflowId ?? "")}`, signal),
    enabled: workflowId !== null,
  });
}

/** The workflow as the run ran it: the version the run names (the service keeps each version
 * an update replaced), or null when that version is not kept (replaced before versions were
 * kept): then the page draws the current version and says so. Versions never change. */
export function useRunWorkflowVersion(workflowId: string | null, version: number | null) {
  return useQuery({
    queryKey: [...keys.workflow(workflowId ?? ""), "version", version ?? 0] as const,
    queryFn: async ({ signal }) => {
      try {
        return await getJson<Workflow>(`/api/workflows/${encodeURIComponent(workflowId ?? "")}/versions/${version ?? 0}`, signal);
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) return null;
        throw error;
      }
    },
    enabled: workflowId !== null && version !== null,
    staleTime: Infinity,
  });
}

/** A run's row (none asked for while ``id`` is null). */
export function useRunSummary(id: string | null) {
  return useQuery({
    queryKey: keys.run(id ?? ""),
    queryFn: ({ signal }) => getJson<RunDetail>(`/api/runs/${encodeURIComponent(id ?? "")}`, signal),
    enabled: id !== null,
  });
}

/** The recent runs of a workflow (the run diff's pickers). */
export function useWorkflowRuns(workflowId: string | null) {
  return useQuery({
    queryKey: ["runs", { workflowId, picker: true }],
    queryFn: ({ signal }) => getJson<RunSummary[]>(`/api/runs?workflow_id=${encodeURIComponent(workflowId ?? "")}&limit=50`, signal),
    enabled: workflowId !== null,
  });
}

export function useStepDetail(runId: string, step: number | null, status: string | null) {
  return useQuery({
    // the status is part of the key: the detail is read again when the step ends
    queryKey: ["step", runId, step, status],
    queryFn: ({ signal }) => getJson<StepDetail>(`${run(runId)}/steps/${step}`, signal),
    enabled: step !== null,
  });
}

/** Every commit of the run (pages of 5,000), or null when the run has no checkpoint. */
export async function allCommits(runId: string, signal?: AbortSignal): Promise<CommitInfo[]> {
  const commits: CommitInfo[] = [];
  let after = 0;
  for (;;) {
    const page = await getJson<CommitPage>(`${run(runId)}/commits?after=${after}&limit=5000`, signal);
    commits.push(...page.items);
    if (!page.has_more) return commits;
    after = page.next_after;
  }
}

export function useCommits(runId: string, refreshKey: unknown) {
  return useQuery({
    queryKey: ["commits", runId, refreshKey],
    queryFn: ({ signal }) => allCommits(runId, signal),
    retry: false,
  });
}

export function useStateAt(runId: string, commit: string | null) {
  return useQuery({
    queryKey: ["state", runId, commit],
    queryFn: ({ signal }) => getJson<RunState>(`${run(runId)}/state?commit=${encodeURIComponent(commit ?? "")}`, signal),
    enabled: commit !== null,
  });
}

export function useCommitDiff(runId: string, from: string | null, to: string | null) {
  return useQuery({
    queryKey: ["commit-diff", runId, from, to],
    queryFn: ({ signal }) => {
      const query = new URLSearchParams();
      if (from) query.set("from", from);
      if (to) query.set("to", to);
      return getJson<RunDiff>(`${run(runId)}/diff?${query.toString()}`, signal);
    },
    enabled: to !== null,
  });
}

export function useRunCompare(a: string | null, b: string | null) {
  return useQuery({
    queryKey: ["compare", a, b],
    queryFn: ({ signal }) => getJson<RunCompare>(`${run(a ?? "")}/compare/${encodeURIComponent(b ?? "")}`, signal),
    enabled: Boolean(a && b),
  });
}

export function useStartRun() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: ({ workflowId, inputs }: { workflowId: string; inputs: Record<string, unknown> }) =>
      sendJson<RunSummary>("POST", `/api/workflows/${encodeURIComponent(workflowId)}/runs`, {
        input_vars: inputs,
        triggered_by: "web",
      }),
    onSuccess: () => client.invalidateQueries({ queryKey: ["runs"] }),
  });
}

export function useCancelRun(runId: string) {
  return useMutation({ mutationFn: () => sendJson<unknown>("POST", `${run(runId)}/cancel`) });
}

export function useResumeRun(runId: string) {
  return useMutation({ mutationFn: (answer: unknown) => sendJson<RunSummary>("POST", `${run(runId)}/resume`, { answer }) });
}

export function useForkRun(runId: string) {
  return useMutation({
    mutationFn: (commitId: string) => sendJson<RunSummary>("POST", `${run(runId)}/fork`, { commit_id: commitId, triggered_by: "web" }),
  });
}

export type { RunDetail };

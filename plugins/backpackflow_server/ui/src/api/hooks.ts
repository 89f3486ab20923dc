// TanStack Query hooks over the client: one cache of server state for every page, with the
// query keys below so a save or delete refreshes exactly the lists that show it.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { getJson, request, sendJson } from "./client";
import type { FlowDocument, NodeTypeInfo, RunDetail, RunSummary, Template, Workflow, WorkflowSaved } from "./types";

export const keys = {
  session: ["session"] as const,
  workflows: ["workflows"] as const,
  workflow: (id: string) => ["workflows", id] as const,
  runs: (workflowId?: string) => ["runs", { workflowId: workflowId ?? null }] as const,
  run: (id: string) => ["run", id] as const,
  nodeTypes: ["node-types"] as const,
  templates: ["templates"] as const,
  flowSchema: ["flow-schema"] as const,
};

const PAGE = 200;

export function useWorkflows() {
  return useQuery({
    queryKey: keys.workflows,
    queryFn: ({ signal }) => getJson<Workflow[]>(`/api/workflows?limit=${PAGE}`, signal),
  });
}

export function useWorkflow(id: string, enabled = true) {
  return useQuery({
    queryKey: keys.workflow(id),
    queryFn: ({ signal }) => getJson<Workflow>(`/api/workflows/${encodeURIComponent(id)}`, signal),
    enabled,
  });
}

export function useRuns(workflowId?: string, limit = 50) {
  const query = workflowId ? `workflow_id=${encodeURIComponent(workflowId)}&limit=${limit}` : `limit=${limit}`;
  return useQuery({
    queryKey: [...keys.runs(workflowId), limit],
    queryFn: ({ signal }) => getJson<RunSummary[]>(`/api/runs?${query}`, signal),
  });
}

export function useRun(id: string) {
  return useQuery({
    queryKey: keys.run(id),
    queryFn: ({ signal }) => getJson<RunDetail>(`/api/runs/${encodeURIComponent(id)}`, signal),
  });
}

export interface WorkflowDraft {
  name: string;
  description?: string | null;
  graph_json: FlowDocument;
}

export function useCreateWorkflow() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: (draft: WorkflowDraft) => sendJson<WorkflowSaved>("POST", "/api/workflows", draft),
    onSuccess: (saved) => {
      client.setQueryData(keys.workflow(saved.id), saved);
      return client.invalidateQueries({ queryKey: keys.workflows, exact: true });
    },
  });
}

export function useDeleteWorkflow() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: (id: string) => request<null>(`/api/workflows/${encodeURIComponent(id)}`, { method: "DELETE" }),
    onSuccess: () => client.invalidateQueries({ queryKey: keys.workflows }),
  });
}

export interface WorkflowUpdate {
  id: string;
  version: number;
  name?: string;
  description?: string | null;
  graph_json?: FlowDocument;
}

/** Save with If-Match: a 412 means someone saved a newer version first. */
export function useUpdateWorkflow() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: ({ id, version, ...body }: WorkflowUpdate) =>
      sendJson<WorkflowSaved>("PUT", `/api/workflows/${encodeURIComponent(id)}`, body, {
        "If-Match": `"${version}"`,
      }),
    onSuccess: (saved) => {
      client.setQueryData(keys.workflow(saved.id), saved);
      return client.invalidateQueries({ queryKey: keys.workflows, exact: true });
    },
  });
}

/** The installed node types: they change only when the service restarts. */
export function useNodeTypes() {
  return useQuery({
    queryKey: keys.nodeTypes,
    queryFn: ({ signal }) => getJson<NodeTypeInfo[]>("/api/node-types", signal),
    staleTime: Infinity,
  });
}

export function useTemplates(enabled = true) {
  return useQuery({
    queryKey: keys.templates,
    queryFn: ({ signal }) => getJson<Template[]>("/api/templates", signal),
    staleTime: Infinity,
    enabled,
  });
}

export interface FlowCheck {
  warnings: string[];
}

/** A save's checks, storing nothing: resolves with the warnings, rejects with an ApiError
 * whose problems name JSON paths into the flow. */
export function validateFlow(graph_json: FlowDocument, signal?: AbortSignal): Promise<FlowCheck> {
  return request<FlowCheck>("/api/flows/validate", { method: "POST", body: { graph_json }, signal }).then(
    (response) => response.data,
  );
}

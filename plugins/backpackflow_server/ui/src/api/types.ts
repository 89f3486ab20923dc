// The service's JSON shapes, as plugins/backpackflow_server/models.py answers them.

export type Role = "admin" | "runner" | "viewer";

export interface Session {
  name: string;
  role: Role;
  via: "bearer" | "cookie" | "local-dev";
  csrf_token: string | null;
}

export interface NodeConfig {
  type: string;
  id: string;
  name?: string;
  namespace?: string;
  params?: Record<string, unknown>;
  inputs?: Record<string, unknown>;
  dependencies?: unknown[];
  [key: string]: unknown;
}

export interface EdgeConfig {
  from: string;
  to: string;
  condition?: string;
  when?: unknown;
  [key: string]: unknown;
}

export interface FlowDocument {
  version?: string;
  namespace?: string;
  entry?: string;
  nodes: NodeConfig[];
  edges: EdgeConfig[];
  [key: string]: unknown;
}

export interface Workflow {
  id: string;
  name: string;
  description: string | null;
  graph_json: FlowDocument;
  version: number;
  created_at: string;
  updated_at: string;
}

export interface WorkflowSaved extends Workflow {
  warnings: string[];
}

export type RunStatus =
  | "queued"
  | "running"
  | "succeeded"
  | "failed"
  | "canceled"
  | "paused"
  | string;

export interface RunSummary {
  id: string;
  workflow_id: string | null;
  workflow_name: string | null;
  workflow_version: number | null;
  triggered_by: string | null;
  status: RunStatus;
  input_vars: Record<string, unknown>;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  total_tokens_input: number;
  total_tokens_output: number;
  total_cost: string;
  total_latency_ms: number | null;
  error_summary: string | null;
  event_count: number;
  last_seq: number;
  outputs: Record<string, unknown>;
  forked_from: { run_id: string; commit_id: string | null } | null;
}

export interface RunStep {
  id: string;
  run_id: string;
  step: number;
  node_id: string;
  node_name: string | null;
  node_type: string | null;
  namespace: string | null;
  status: string;
  started_at: string | null;
  finished_at: string | null;
  latency_ms: number | null;
  tokens_input: number;
  tokens_output: number;
  cost: string;
  attempts: number;
  retries: number;
  cache_hit: boolean;
  action: string | null;
  error: string | null;
  parent_step: number | null;
}

export interface RunDetail extends RunSummary {
  steps: RunStep[];
}

export interface TraceEvent {
  id: string;
  seq: number;
  timestamp: number;
  run_id: string;
  step: number | null;
  node_id: string | null;
  node_name: string | null;
  namespace: string | null;
  type: string;
  payload: unknown;
  parent_step: number | null;
}

export interface TracePage {
  run_id: string;
  items: TraceEvent[];
  next_after: number;
  has_more: boolean;
}

/** One problem of a 422 answer: where (a JSON path into the body) and what. */
export interface Problem {
  loc: (string | number)[];
  path: string;
  msg: string;
  type: string;
}

/** GET /api/node-types: an installed node type, as the editor's palette shows it. */
export interface NodeTypeInfo {
  name: string;
  description: string;
  plugin: string;
  dependencies: string[];
  params_schema: Record<string, unknown>;
  reads: Record<string, Record<string, unknown>>;
  writes: Record<string, Record<string, unknown>>;
}

/** GET /api/templates: a demo flow to start a workflow from. */
export interface Template {
  name: string;
  description: string | null;
  graph_json: FlowDocument;
}

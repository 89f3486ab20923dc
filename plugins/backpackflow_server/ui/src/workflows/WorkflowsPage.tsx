// `/`: the workflows, with search, create (empty or from a demo template), import and export
// of flow JSON files, duplicate, delete, and each workflow's own run history.
import { useMemo, useRef, useState, type ChangeEvent } from "react";
import { Link } from "react-router-dom";
import { useCreateWorkflow, useDeleteWorkflow, useWorkflows } from "../api/hooks";
import type { Workflow } from "../api/types";
import { useSession } from "../components/SessionGate";
import { Empty, ErrorState, Loading } from "../components/States";
import { download, exportDocument, parseImport } from "./files";
import { NewWorkflowDialog } from "./NewWorkflowDialog";
import { RunHistory } from "./RunHistory";
import "./workflows.css";

export function matches(workflow: Pick<Workflow, "name" | "description" | "id">, search: string): boolean {
  const needle = search.trim().toLowerCase();
  if (!needle) return true;
  return [workflow.name, workflow.description ?? "", workflow.id].some((text) => text.toLowerCase().includes(needle));
}

function WorkflowRow({ workflow, canEdit }: { workflow: Workflow; canEdit: boolean }) {
  const [showRuns, setShowRuns] = useState(false);
  const [confirming, setConfirming] = useState(false);
  const create = useCreateWorkflow();
  const remove = useDeleteWorkflow();
  const error = create.error ?? remove.error;
  return (
    <li className="workflow" aria-label={workflow.name}>
      <div className="row">
        <div className="what">
          <Link to={`/workflows/${workflow.id}`} className="name">
            {workflow.name}
          </Link>
          {workflow.description && <span className="description">{workflow.description}</span>}
          <span className="meta">
            {workflow.graph_json.nodes?.length ?? 0} nodes · version {workflow.version} · updated{" "}
            {new Date(workflow.updated_at).toLocaleString()}
          </span>
        </div>
        <div className="actions">
          <button type="button" aria-expanded={showRuns} onClick={() => setShowRuns(!showRuns)}>
            Runs
          </button>
          <button type="button" onClick={() => download(workflow.name, exportDocument(workflow))}>
            Export
          </button>
          {canEdit && (
            <button
              type="button"
              disabled={create.isPending}
              onClick={() =>
                create.mutate({
                  name: `${workflow.name} (copy)`.slice(0, 200),
                  description: workflow.description,
                  graph_json: workflow.graph_json,
                })
              }
            >
              Duplicate
            </button>
          )}
          {canEdit && !confirming && (
            <button type="button" className="danger" onClick={() => setConfirming(true)}>
              Delete
            </button>
          )}
          {confirming && (
            <span className="confirm" role="group" aria-label={`Delete ${workflow.name}?`}>
              Delete it? Its runs stay.
              <button type="button" className="danger" disabled={remove.isPending} onClick={() => remove.mutate(workflow.id)}>
                Confirm delete
              </button>
              <button type="button" onClick={() => setConfirming(false)}>
                Keep
              </button>
            </span>
          )}
        </div>
      </div>
      {error && <ErrorState error={error} />}
      {showRuns && <RunHistory workflowId={workflow.id} />}
    </li>
  );
}

export function WorkflowsPage() {
  const { session } = useSession();
  const canEdit = session.role === "admin";
  const workflows = useWorkflows();
  const create = useCreateWorkflow();
  const [search, setSearch] = useState("");
  const [creating, setCreating] = useState(false);
  const [importError, setImportError] = useState<string | null>(null);
  const fileInput = useRef<HTMLInputElement>(null);
  const shown = useMemo(() => (workflows.data ?? []).filter((item) => matches(item, search)), [workflows.data, search]);

  async function importFile(event: ChangeEvent<HTMLInputElement>) {
    const file = event.target.files?.[0];
    event.target.value = "";
    if (!file) return;
    setImportError(null);
    try {
      const imported = parseImport(await file.text(), file.name.replace(/\.json$/i, ""));
      await create.mutateAsync(imported);
    } catch (error) {
      setImportError(`${file.name}: ${(error as Error).message}`);
    }
  }

  return (
    <section className="workflows-page">
      <header className="page-header">
        <h1>Workflows</h1>
        <input
          type="search"
          aria-label="Search workflows"
          placeholder="Search by name or description"
          value={search}
          onChange={(event) => setSearch(event.target.value)}
        />
        {canEdit && (
          <>
            <button type="button" onClick={() => fileInput.current?.click()}>
              Import JSON
            </button>
            <input ref={fileInput} type="file" accept=".json,application/json" hidden onChange={(e) => void importFile(e)} aria-label="Flow JSON file" />
            <button type="button" className="primary" onClick={() => setCreating(true)}>
              New workflow
            </button>
          </>
        )}
      </header>
      {importError && (
        <p role="alert" className="field-error">
          Not imported: {importError}
        </p>
      )}
      {workflows.isPending && <Loading what="the workflows" />}
      {workflows.isError && <ErrorState error={workflows.error} retry={() => workflows.refetch()} title="The workflows could not be loaded" />}
      {workflows.isSuccess && workflows.data.length === 0 && (
        <Empty>
          <h2>No workflow yet</h2>
          {canEdit ? (
            <p>
              Press <strong>New workflow</strong> to build one on an empty canvas or start from a demo template, or{" "}
              <strong>Import JSON</strong> to load a flow file.
            </p>
          ) : (
            <p>An admin has to create one: your token's role ({session.role}) can only read and run.</p>
          )}
        </Empty>
      )}
      {workflows.isSuccess && workflows.data.length > 0 && shown.length === 0 && (
        <Empty>
          No workflow matches “{search}”. <button type="button" className="link" onClick={() => setSearch("")}>Clear the search</button>
        </Empty>
      )}
      {shown.length > 0 && (
        <ul className="workflow-list" aria-label="Workflows">
          {shown.map((workflow) => (
            <WorkflowRow key={workflow.id} workflow={workflow} canEdit={canEdit} />
          ))}
        </ul>
      )}
      {creating && <NewWorkflowDialog onClose={() => setCreating(false)} />}
    </section>
  );
}

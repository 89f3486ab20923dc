// `/workflows/:id` (and `/workflows/new`): the flow editor. The flow document is the state
// (with undo/redo); the canvas, the config panel and the JSON view are views of it. Every
// change is checked by the service as you type (POST /api/flows/validate) and its problems
// are shown on the node, edge or field their JSON path names. Save uses If-Match, so a save
// over someone else's newer version is refused with a clear choice instead of lost work.
import { useCallback, useEffect, useMemo, useRef, useState, type DragEvent } from "react";
import { useNavigate, useParams, useSearchParams } from "react-router-dom";
import { useQueryClient } from "@tanstack/react-query";
import {
  Background,
  Controls,
  MarkerType,
  MiniMap,
  ReactFlow,
  ReactFlowProvider,
  applyNodeChanges,
  useReactFlow,
  type Connection,
  type Edge,
  type NodeChange,
} from "@xyflow/react";
import "@xyflow/react/dist/style.css";
import { ApiError, getJson } from "../api/client";
import { keys, useCreateWorkflow, useNodeTypes, useUpdateWorkflow, useWorkflow, validateFlow } from "../api/hooks";
import type { FlowDocument, NodeTypeInfo, Problem, Workflow } from "../api/types";
import { guardBackButton, setLeaveGuard } from "../components/leaveGuard";
import { useSession } from "../components/SessionGate";
import { Dialog } from "../components/Dialog";
import { ErrorState, Loading } from "../components/States";
import { RunForm } from "../runs/RunForm";
import { suggestions as completionsFor } from "./completion";
import { FlowNode, type FlowNodeType } from "./FlowNode";
import { commit, redo, start, undo, type History } from "./history";
import { EdgePanel, FlowPanel, NodePanel } from "./Inspector";
import { JsonView } from "./JsonView";
import { autoLayout, completePositions } from "./layout";
import {
  addEdge,
  addNode,
  edgeIndex,
  edgeKey,
  edgeLabel,
  emptyFlow,
  normalise,
  placeProblems,
  plain,
  removeEdges,
  removeNodes,
  renameNode,
  updateEdge,
  updateNode,
  type EditorState,
  type Positions,
} from "./model";
import { DRAG_TYPE, Palette } from "./Palette";
import "./editor.css";

const nodeTypesForCanvas = { flowNode: FlowNode };
const CHECK_DELAY_MS = 400;

type Selection = { kind: "node"; id: string } | { kind: "edge"; index: number } | null;

interface Check {
  status: "checking" | "ok" | "problems" | "error";
  problems: Problem[];
  warnings: string[];
  message?: string;
}

/** What "unsaved changes" compares: the document, the name and the description. */
const snapshot = (doc: FlowDocument, name: string, description: string) => JSON.stringify([doc, name, description]);

const layoutKey = (id: string) => `backpackflow.layout.${id}`;

function storedPositions(id: string | null): Positions {
  if (!id) return {};
  try {
    return JSON.parse(localStorage.getItem(layoutKey(id)) ?? "{}") as Positions;
  } catch {
    return {};
  }
}

function storePositions(id: string, positions: Positions): void {
  try {
    localStorage.setItem(layoutKey(id), JSON.stringify(positions));
  } catch {
    // storage full or off: the layout is recomputed next time
  }
}

/** The flow-document problems of a 422 (its request-level ones are shown as a message). */
function flowProblems(error: ApiError): Problem[] {
  return error.problems.filter((problem) => problem.loc[1] === "graph_json");
}

export default function EditorPage() {
  const { id = "" } = useParams();
  const isNew = id === "new";
  const [search] = useSearchParams();
  const nodeTypes = useNodeTypes();
  const workflow = useWorkflow(id, !isNew);
  const [reloads, setReloads] = useState(0);
  if (nodeTypes.isPending || (!isNew && workflow.isPending)) return <Loading what="the workflow" />;
  if (nodeTypes.isError) return <ErrorState error={nodeTypes.error} retry={() => nodeTypes.refetch()} title="The node types could not be loaded" />;
  if (!isNew && workflow.isError) return <ErrorState error={workflow.error} retry={() => workflow.refetch()} title="The workflow could not be loaded" />;
  const loaded = isNew ? null : (workflow.data ?? null);
  return (
    <ReactFlowProvider>
      <Editor
        key={`${id}:${reloads}`} // a save updates the cached workflow: keep the editor (and its undo steps)
        workflow={loaded}
        initialName={search.get("name") ?? "Untitled workflow"}
        nodeTypes={nodeTypes.data}
        onReload={() => {
          void workflow.refetch().then(() => setReloads((n) => n + 1));
        }}
      />
    </ReactFlowProvider>
  );
}

interface EditorProps {
  workflow: Workflow | null;
  initialName: string;
  nodeTypes: NodeTypeInfo[];
  onReload: () => void;
}

function Editor({ workflow, initialName, nodeTypes, onReload }: EditorProps) {
  const navigate = useNavigate();
  const client = useQueryClient();
  const { session } = useSession();
  const readOnly = session.role !== "admin";
  const flow = useReactFlow();
  const create = useCreateWorkflow();
  const update = useUpdateWorkflow();

  const [history, setHistory] = useState<History<EditorState>>(() => {
    const doc = normalise(workflow?.graph_json ?? emptyFlow());
    return start({ doc, positions: completePositions(doc, storedPositions(workflow?.id ?? null)) });
  });
  const { doc, positions } = history.present;
  const [name, setName] = useState(workflow?.name ?? initialName);
  const [description, setDescription] = useState(workflow?.description ?? "");
  const [base, setBase] = useState(() => ({
    version: workflow?.version ?? 0,
    saved: workflow ? snapshot(normalise(workflow.graph_json), workflow.name, workflow.description ?? "") : "",
  }));
  const [selection, setSelection] = useState<Selection>(null);
  const [view, setView] = useState<"canvas" | "json">("canvas");
  const [check, setCheck] = useState<Check>({ status: "checking", problems: [], warnings: [] });
  const [saveError, setSaveError] = useState<ApiError | Error | null>(null);
  const [conflict, setConflict] = useState<{ theirs: number } | null>(null);
  const [savedNote, setSavedNote] = useState<string | null>(null);

  const docJson = useMemo(() => JSON.stringify(doc), [doc]);
  // a new workflow has something to lose once it has a node
  const dirty = workflow ? snapshot(doc, name, description) !== base.saved : doc.nodes.length > 0;
  const placed = useMemo(() => placeProblems(doc, check.problems), [doc, check.problems]);
  const types = useMemo(() => new Map(nodeTypes.map((type) => [type.name, type])), [nodeTypes]);

  const change = useCallback((next: EditorState, group: string | null = null) => {
    setHistory((current) => commit(current, next, group));
    setSavedNote(null);
  }, []);
  const changeDoc = useCallback(
    (update: (doc: FlowDocument) => FlowDocument, group: string | null = null) => {
      setHistory((current) => commit(current, { ...current.present, doc: update(current.present.doc) }, group));
      setSavedNote(null);
    },
    [],
  );

  // the service checks every change, a moment after the typing stops
  useEffect(() => {
    const controller = new AbortController();
    setCheck((current) => ({ ...current, status: "checking" }));
    const timer = setTimeout(() => {
      validateFlow(JSON.parse(docJson) as FlowDocument, controller.signal)
        .then((result) => setCheck({ status: "ok", problems: [], warnings: result.warnings }))
        .catch((error: unknown) => {
          if (controller.signal.aborted) return;
          if (error instanceof ApiError && error.status === 422) {
            setCheck({ status: "problems", problems: flowProblems(error), warnings: [], message: error.message });
          } else {
            setCheck({ status: "error", problems: [], warnings: [], message: (error as Error).message });
          }
        });
    }, CHECK_DELAY_MS);
    return () => {
      clearTimeout(timer);
      controller.abort();
    };
  }, [docJson]);

  // unsaved work survives no reload: ask first (and before the app's own links leave)
  useEffect(() => {
    if (!dirty) return;
    const warn = (event: BeforeUnloadEvent) => event.preventDefault();
    window.addEventListener("beforeunload", warn);
    const reason = "This workflow has changes that are not saved.";
    const removeGuard = setLeaveGuard(() => reason);
    const unguardBack = guardBackButton(reason);
    return () => {
      window.removeEventListener("beforeunload", warn);
      removeGuard();
      unguardBack();
    };
  }, [dirty]);

  // the canvas's nodes keep what React Flow measured; everything else comes from the document
  const [canvasNodes, setCanvasNodes] = useState<FlowNodeType[]>([]);
  useEffect(() => {
    setCanvasNodes((previous) => {
      const before = new Map(previous.map((node) => [node.id, node]));
      return doc.nodes.map((node) => ({
        ...(before.get(node.id) ?? {}),
        id: node.id,
        type: "flowNode",
        ariaLabel: node.id,
        position: positions[node.id] ?? { x: 0, y: 0 },
        selected: selection?.kind === "node" && selection.id === node.id,
        data: {
          type: node.type,
          name: node.name,
          problems: placed.nodes[node.id]?.messages ?? [],
          entry: doc.entry === node.id,
          known: types.has(node.type),
        },
      }));
    });
  }, [doc, positions, placed, selection, types]);

  const canvasEdges: Edge[] = useMemo(() => {
    const ids = new Set(doc.nodes.map((node) => node.id));
    return doc.edges.flatMap((edge, index) =>
      ids.has(edge.from) && ids.has(edge.to)
        ? [
            {
              id: edgeKey(index),
              source: edge.from,
              target: edge.to,
              label: edgeLabel(edge) || undefined,
              ariaLabel: `Edge ${edge.from} to ${edge.to}`,
              selected: selection?.kind === "edge" && selection.index === index,
              className: placed.edges[index] ? "invalid" : undefined,
              markerEnd: { type: MarkerType.ArrowClosed },
            },
          ]
        : [],
    );
  }, [doc, selection, placed]);

  const onNodesChange = useCallback(
    (changes: NodeChange<FlowNodeType>[]) => {
      setCanvasNodes((nodes) => applyNodeChanges(changes, nodes));
      const moved: Positions = {};
      for (const item of changes) {
        if (item.type === "position" && item.position && !item.dragging) moved[item.id] = item.position;
      }
      if (Object.keys(moved).length) {
        setHistory((current) =>
          commit(current, { ...current.present, positions: { ...current.present.positions, ...moved } }, `move:${Object.keys(moved).join(",")}`),
        );
      }
    },
    [],
  );

  const onDelete = useCallback(
    ({ nodes, edges }: { nodes: { id: string }[]; edges: Edge[] }) => {
      if (readOnly) return;
      setHistory((current) => {
        const withoutEdges = { ...current.present, doc: removeEdges(current.present.doc, edges.map((edge) => edgeIndex(edge.id))) };
        return commit(current, removeNodes(withoutEdges, nodes.map((node) => node.id)));
      });
      setSelection(null);
    },
    [readOnly],
  );

  const onConnect = useCallback(
    (connection: Connection) => {
      if (readOnly || !connection.source || !connection.target) return;
      setHistory((current) => commit(current, { ...current.present, doc: addEdge(current.present.doc, connection.source, connection.target) }));
      setSelection({ kind: "edge", index: doc.edges.length });
    },
    [readOnly, doc.edges.length],
  );

  function add(type: string, at?: { x: number; y: number }) {
    const lowest = Object.values(positions).reduce((max, point) => Math.max(max, point.y), -120);
    const where = at ?? { x: 40 + (doc.nodes.length % 3) * 40, y: lowest + 120 };
    const next = addNode(history.present, type, where);
    change(next);
    setSelection({ kind: "node", id: next.doc.nodes[next.doc.nodes.length - 1].id });
  }

  function onDrop(event: DragEvent) {
    const type = event.dataTransfer.getData(DRAG_TYPE);
    if (!type || readOnly) return;
    event.preventDefault();
    add(type, flow.screenToFlowPosition({ x: event.clientX, y: event.clientY }));
  }

  function layout() {
    change({ doc, positions: autoLayout(doc) });
    requestAnimationFrame(() => void flow.fitView({ padding: 0.2 }));
  }

  async function save(overwrite = false) {
    setSaveError(null);
    setSavedNote(null);
    const graph_json = plain(doc);
    try {
      if (!workflow) {
        const saved = await create.mutateAsync({ name: name.trim() || "Untitled workflow", description: description || null, graph_json });
        storePositions(saved.id, positions);
        navigate(`/workflows/${saved.id}`, { replace: true });
        return;
      }
      let version = base.version;
      if (overwrite) version = (await getJson<Workflow>(`/api/workflows/${encodeURIComponent(workflow.id)}`)).version;
      const saved = await update.mutateAsync({ id: workflow.id, version, name: name.trim() || workflow.name, description: description || null, graph_json });
      storePositions(saved.id, positions);
      setConflict(null);
      setBase({ version: saved.version, saved: snapshot(doc, name, description) });
      setSavedNote(`Saved version ${saved.version}${saved.warnings.length ? ` with ${saved.warnings.length} warning(s)` : ""}.`);
      client.setQueryData(keys.workflow(saved.id), saved);
    } catch (error) {
      if (error instanceof ApiError && error.status === 412 && workflow) {
        const theirs = await getJson<Workflow>(`/api/workflows/${encodeURIComponent(workflow.id)}`).catch(() => null);
        setConflict({ theirs: theirs?.version ?? base.version + 1 });
        return;
      }
      if (error instanceof ApiError && error.status === 422) {
        const problems = flowProblems(error);
        if (problems.length) setCheck({ status: "problems", problems, warnings: [], message: error.message });
      }
      setSaveError(error as Error);
    }
  }

  // keyboard: undo / redo / save, unless a text field has the focus (it has its own undo)
  const saveRef = useRef(save);
  saveRef.current = save;
  useEffect(() => {
    function onKey(event: KeyboardEvent) {
      if (!(event.ctrlKey || event.metaKey)) return;
      const key = event.key.toLowerCase();
      if (key === "s") {
        event.preventDefault();
        if (!readOnly) void saveRef.current();
        return;
      }
      const target = event.target as HTMLElement | null;
      if (target && /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName)) return;
      if (key === "z" && !event.shiftKey) setHistory(undo);
      else if ((key === "z" && event.shiftKey) || key === "y") setHistory(redo);
      else return;
      event.preventDefault();
    }
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [readOnly]);

  const selectedNode = selection?.kind === "node" ? doc.nodes.find((node) => node.id === selection.id) : undefined;
  const selectedEdge = selection?.kind === "edge" ? doc.edges[selection.index] : undefined;
  const completions = useMemo(() => completionsFor(doc, nodeTypes, selectedNode?.id), [doc, nodeTypes, selectedNode?.id]);
  const problemCount = check.problems.length;
  const saving = create.isPending || update.isPending;
  const [running, setRunning] = useState(false);

  return (
    <div className="editor">
      <div className="editor-toolbar" role="toolbar" aria-label="Editor">
        <h1 title={name}>{name || "Untitled workflow"}</h1>
        <span className="version">{workflow ? `version ${base.version}` : "not saved yet"}</span>
        <button type="button" onClick={() => setHistory(undo)} disabled={history.past.length === 0} aria-keyshortcuts="Control+Z">
          Undo
        </button>
        <button type="button" onClick={() => setHistory(redo)} disabled={history.future.length === 0} aria-keyshortcuts="Control+Shift+Z">
          Redo
        </button>
        <button type="button" onClick={layout} disabled={doc.nodes.length === 0}>
          Auto-layout
        </button>
        <button type="button" aria-pressed={view === "json"} onClick={() => setView(view === "json" ? "canvas" : "json")}>
          JSON view
        </button>
        <span className={`check check-${check.status}`} role="status" aria-live="polite">
          {check.status === "checking" && "Checking…"}
          {check.status === "ok" && (check.warnings.length ? `Valid, ${check.warnings.length} warning(s)` : "Valid")}
          {check.status === "problems" && `${problemCount || "Some"} problem${problemCount === 1 ? "" : "s"}`}
          {check.status === "error" && `Not checked: ${check.message}`}
        </span>
        {dirty && <span className="dirty">unsaved changes</span>}
        {savedNote && <span className="saved-note">{savedNote}</span>}
        <button type="button" className="primary" onClick={() => void save()} disabled={readOnly || saving} title={readOnly ? "Only an admin token can save workflows" : undefined}>
          {saving ? "Saving…" : "Save"}
        </button>
        {workflow && (
          <button
            type="button"
            onClick={() => setRunning(true)}
            disabled={dirty}
            title={dirty ? "Save first: a run runs the saved version" : `Start a run of version ${base.version}`}
          >
            Run
          </button>
        )}
      </div>
      {running && workflow && (
        <Dialog title={`Run ${workflow.name}, version ${base.version}`} onClose={() => setRunning(false)}>
          <RunForm flow={doc} workflowId={workflow.id} initialInputs={{}} onStarted={(id) => navigate(`/runs/${id}`)} />
        </Dialog>
      )}
      {conflict && workflow && (
        <div className="banner conflict" role="alert">
          <strong>Not saved: this workflow changed since you opened it.</strong> Someone saved version {conflict.theirs} after you opened
          version {base.version}. Your changes are still here.
          <button type="button" onClick={onReload}>
            Discard mine and load version {conflict.theirs}
          </button>
          <button type="button" className="danger" onClick={() => void save(true)}>
            Save mine over theirs
          </button>
        </div>
      )}
      {saveError && !conflict && (
        <div className="banner error" role="alert">
          <strong>Not saved:</strong> {saveError.message}
          {saveError instanceof ApiError && saveError.status === 422 && " (each problem is shown on its node, edge or field)"}
        </div>
      )}
      <div className="editor-body">
        <Palette nodeTypes={nodeTypes} onAdd={(type) => add(type)} disabled={readOnly} />
        <div className="editor-main" onDragOver={(event) => event.preventDefault()} onDrop={onDrop}>
          {view === "json" ? (
            <JsonView
              doc={doc}
              disabled={readOnly}
              onApply={(next) => {
                const normal = normalise(next);
                change({ doc: normal, positions: completePositions(normal, positions) });
              }}
            />
          ) : (
            <div className="canvas" aria-label="Flow canvas">
              {doc.nodes.length === 0 && (
                <p className="canvas-empty">Empty canvas: add a node from the palette on the left (click it, or drag it here).</p>
              )}
              <ReactFlow<FlowNodeType, Edge>
                nodes={canvasNodes}
                edges={canvasEdges}
                nodeTypes={nodeTypesForCanvas}
                onNodesChange={onNodesChange}
                onConnect={onConnect}
                onDelete={onDelete}
                onNodeClick={(_, node) => setSelection({ kind: "node", id: node.id })}
                onEdgeClick={(_, edge) => setSelection({ kind: "edge", index: edgeIndex(edge.id) })}
                onPaneClick={() => setSelection(null)}
                nodesDraggable
                nodesConnectable={!readOnly}
                elementsSelectable
                deleteKeyCode={readOnly ? null : ["Backspace", "Delete"]}
                fitView
                fitViewOptions={{ padding: 0.2, maxZoom: 1.2 }}
                proOptions={{ hideAttribution: true }}
              >
                <Background />
                <Controls />
                <MiniMap pannable zoomable />
              </ReactFlow>
            </div>
          )}
        </div>
        <div className="editor-side">
          {selectedNode ? (
            <NodePanel
              doc={doc}
              node={selectedNode}
              nodeType={types.get(selectedNode.type)}
              problems={placed}
              suggestions={completions}
              readOnly={readOnly}
              onRename={(to) => {
                change(renameNode(history.present, selectedNode.id, to.trim()));
                setSelection({ kind: "node", id: to.trim() });
              }}
              onChange={(update, group) => changeDoc((current) => updateNode(current, selectedNode.id, update), group)}
              onConnect={(to, action) => {
                changeDoc((current) => addEdge(current, selectedNode.id, to, action));
              }}
              onSelectEdge={(index) => setSelection({ kind: "edge", index })}
              onDelete={() => {
                change(removeNodes(history.present, [selectedNode.id]));
                setSelection(null);
              }}
            />
          ) : selectedEdge && selection?.kind === "edge" ? (
            <EdgePanel
              edge={selectedEdge}
              index={selection.index}
              problems={placed.edges[selection.index] ?? []}
              readOnly={readOnly}
              onChange={(update, group) => changeDoc((current) => updateEdge(current, selection.index, update), group)}
              onDelete={() => {
                changeDoc((current) => removeEdges(current, [selection.index]));
                setSelection(null);
              }}
            />
          ) : (
            <FlowPanel
              doc={doc}
              name={name}
              description={description}
              problems={placed.flow}
              warnings={check.warnings}
              readOnly={readOnly}
              onName={setName}
              onDescription={setDescription}
              onDoc={changeDoc}
            />
          )}
        </div>
      </div>
    </div>
  );
}

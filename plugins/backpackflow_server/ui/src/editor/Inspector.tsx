// The config panel: the selected node's id, name, params (a form from its type's schema) and
// input mappings, and its outgoing edges; the selected edge's action and `when` condition; or,
// with nothing selected, the workflow's name, description, entry, declared inputs and settings
// (limits, dependencies, sinks: FlowSettings).
import { useEffect, useState, type ReactNode } from "react";
import type { EdgeConfig, FlowDocument, NodeConfig, NodeTypeInfo } from "../api/types";
import type { Suggestion } from "./completion";
import { FlowSettings } from "./FlowSettings";
import { DEFAULT_ACTION, type PlacedProblems } from "./model";
import { ParamsForm } from "./ParamsForm";
import { TemplateInput } from "./TemplateInput";

/** ``owner`` without ``owner[field][key]``; the field goes too once it is empty. */
function withoutMember<T extends Record<string, unknown>>(owner: T, field: string, key: string): T {
  const rest = { ...((owner[field] ?? {}) as Record<string, unknown>) };
  delete rest[key];
  const next: Record<string, unknown> = { ...owner, [field]: rest };
  if (Object.keys(rest).length === 0) delete next[field];
  return next as T;
}

/** A name field and a button adding it (unless empty or taken). */
function AddName({ label, button, taken, disabled, onAdd }: { label: string; button: string; taken: object; disabled: boolean; onAdd: (name: string) => void }) {
  const [text, setText] = useState("");
  return (
    <form
      className="inline"
      onSubmit={(event) => {
        event.preventDefault();
        const name = text.trim();
        if (!name || name in taken) return;
        onAdd(name);
        setText("");
      }}
    >
      <input aria-label={label} placeholder="name" value={text} onChange={(event) => setText(event.target.value)} disabled={disabled} />
      <button type="submit" disabled={disabled || !text.trim()}>
        {button}
      </button>
    </form>
  );
}

function Problems({ items, label }: { items: string[]; label: string }) {
  if (items.length === 0) return null;
  return (
    <ul className="problems" role="alert" aria-label={label}>
      {items.map((item, index) => (
        <li key={index}>{item}</li>
      ))}
    </ul>
  );
}

/** A text field that commits on Enter or when it loses focus (an id, a name), saying why not. */
function CommitField({ label, value, onCommit, disabled }: { label: string; value: string; onCommit: (value: string) => void; disabled?: boolean }) {
  const [text, setText] = useState(value);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => setText(value), [value]);
  function commit() {
    if (text === value) return;
    try {
      onCommit(text);
      setError(null);
    } catch (caught) {
      setError((caught as Error).message);
    }
  }
  return (
    <label>
      {label}
      <input
        value={text}
        disabled={disabled}
        aria-invalid={error ? true : undefined}
        onChange={(event) => setText(event.target.value)}
        onBlur={commit}
        onKeyDown={(event) => {
          if (event.key === "Enter") commit();
        }}
      />
      {error && <span className="field-error">{error}</span>}
    </label>
  );
}

function Section({ title, children }: { title: string; children: ReactNode }) {
  return (
    <section className="inspector-section">
      <h3>{title}</h3>
      {children}
    </section>
  );
}

interface NodePanelProps {
  doc: FlowDocument;
  node: NodeConfig;
  nodeType: NodeTypeInfo | undefined;
  problems: PlacedProblems;
  suggestions: Suggestion[];
  readOnly: boolean;
  onRename: (to: string) => void;
  onChange: (change: (node: NodeConfig) => NodeConfig, group: string) => void;
  onConnect: (to: string, action: string) => void;
  onSelectEdge: (index: number) => void;
  onDelete: () => void;
}

export function NodePanel(props: NodePanelProps) {
  const { doc, node, nodeType, problems, suggestions, readOnly } = props;
  const placed = problems.nodes[node.id] ?? { messages: [], fields: {} };
  const others = doc.nodes.filter((other) => other.id !== node.id);
  const [target, setTarget] = useState("");
  const [action, setAction] = useState("");
  const inputs = (node.inputs ?? {}) as Record<string, unknown>;
  const outgoing = doc.edges.map((edge, index) => ({ edge, index })).filter(({ edge }) => edge.from === node.id);

  return (
    <div className="inspector" aria-label={`Node ${node.id}`}>
      <h2>
        Node <code>{node.id}</code>
      </h2>
      <p className="hint">
        {node.type}
        {nodeType ? ` (${nodeType.plugin}): ${nodeType.description.split("\n")[0]}` : ": this node type is not installed on the service"}
      </p>
      <Problems items={placed.messages} label={`Problems of node ${node.id}`} />
      <div className="stack">
        <CommitField label="Node id" value={node.id} onCommit={props.onRename} disabled={readOnly} />
        <CommitField
          label="Display name"
          value={node.name ?? ""}
          disabled={readOnly}
          onCommit={(name) =>
            props.onChange((current) => {
              const next: NodeConfig = { ...current, name };
              if (!name) delete next.name;
              return next;
            }, `name:${node.id}`)
          }
        />
      </div>
      <Section title="Params">
        {nodeType ? (
          <ParamsForm
            key={node.id}
            nodeType={nodeType}
            params={(node.params ?? {}) as Record<string, unknown>}
            fieldErrors={placed.fields}
            suggestions={suggestions}
            disabled={readOnly}
            onChange={(params) => props.onChange((current) => ({ ...current, params }), `params:${node.id}`)}
          />
        ) : (
          <p className="hint">Edit its params in the JSON view.</p>
        )}
      </Section>
      <Section title="Inputs">
        <p className="hint">Names the node reads, each a template such as {"{{ node.x.output }}"}.</p>
        {Object.entries(inputs).map(([name, value]) => (
          <div className="input-row" key={name}>
            <code>{name}</code>
            <TemplateInput
              label={`Input ${name}`}
              value={typeof value === "string" ? value : JSON.stringify(value)}
              suggestions={suggestions}
              disabled={readOnly}
              invalid={Boolean(placed.fields[`inputs.${name}`])}
              onChange={(text) =>
                props.onChange((current) => ({ ...current, inputs: { ...(current.inputs ?? {}), [name]: text } }), `input:${node.id}:${name}`)
              }
            />
            <button
              type="button"
              aria-label={`Remove input ${name}`}
              disabled={readOnly}
              onClick={() =>
                props.onChange((current) => withoutMember(current, "inputs", name), `input-remove:${node.id}`)
              }
            >
              ×
            </button>
          </div>
        ))}
        <AddName
          label="New input name"
          button="Add input"
          taken={inputs}
          disabled={readOnly}
          onAdd={(name) => props.onChange((current) => ({ ...current, inputs: { ...(current.inputs ?? {}), [name]: "" } }), `input-add:${node.id}`)}
        />
      </Section>
      <Section title="Edges out">
        {outgoing.length === 0 && <p className="hint">None: this node ends the flow.</p>}
        <ul className="edge-list">
          {outgoing.map(({ edge, index }) => (
            <li key={index}>
              <button type="button" className="link" onClick={() => props.onSelectEdge(index)}>
                → {edge.to} ({edge.condition ?? DEFAULT_ACTION}
                {edge.when ? ", when …" : ""})
              </button>
              {problems.edges[index] && <span className="field-error"> {problems.edges[index].length} problem(s)</span>}
            </li>
          ))}
        </ul>
        <form
          className="inline"
          aria-label="Connect"
          onSubmit={(event) => {
            event.preventDefault();
            if (!target) return;
            props.onConnect(target, action.trim());
            setAction("");
          }}
        >
          <select aria-label="Connect to" value={target} onChange={(event) => setTarget(event.target.value)} disabled={readOnly}>
            <option value="">connect to…</option>
            {others.map((other) => (
              <option key={other.id} value={other.id}>
                {other.id}
              </option>
            ))}
          </select>
          <input aria-label="Edge action" placeholder={DEFAULT_ACTION} value={action} onChange={(event) => setAction(event.target.value)} disabled={readOnly} />
          <button type="submit" disabled={readOnly || !target}>
            Add edge
          </button>
        </form>
      </Section>
      <div className="actions">
        <button type="button" className="danger" onClick={props.onDelete} disabled={readOnly}>
          Delete node
        </button>
      </div>
    </div>
  );
}

interface EdgePanelProps {
  edge: EdgeConfig;
  index: number;
  problems: string[];
  readOnly: boolean;
  onChange: (change: (edge: EdgeConfig) => EdgeConfig, group: string) => void;
  onDelete: () => void;
}

export function EdgePanel({ edge, index, problems, readOnly, onChange, onDelete }: EdgePanelProps) {
  const when = typeof edge.when === "string" ? edge.when : edge.when ? JSON.stringify(edge.when) : "";
  return (
    <div className="inspector" aria-label={`Edge ${edge.from} to ${edge.to}`}>
      <h2>
        Edge <code>{edge.from}</code> → <code>{edge.to}</code>
      </h2>
      <Problems items={problems} label="Problems of this edge" />
      <div className="stack">
        <label>
          Action
          <input
            value={edge.condition ?? ""}
            placeholder={DEFAULT_ACTION}
            disabled={readOnly}
            onChange={(event) =>
              onChange((current) => {
                const next: EdgeConfig = { ...current, condition: event.target.value };
                if (!event.target.value || event.target.value === DEFAULT_ACTION) delete next.condition;
                return next;
              }, `action:${index}`)
            }
          />
          <small className="hint">The action the source node returns to take this edge ({DEFAULT_ACTION} when it returns none).</small>
        </label>
        <label>
          When condition
          <input
            className="code"
            value={when}
            placeholder="e.g. output.score > 0.5"
            disabled={readOnly}
            aria-invalid={problems.length ? true : undefined}
            onChange={(event) =>
              onChange((current) => {
                const text = event.target.value;
                const next: EdgeConfig = { ...current };
                if (!text) delete next.when;
                else if (text.trim().startsWith("{")) {
                  try {
                    next.when = JSON.parse(text);
                  } catch {
                    next.when = text; // the server says what is wrong with it
                  }
                } else next.when = text;
                return next;
              }, `when:${index}`)
            }
          />
          <small className="hint">A CEL expression over the node's output and the Backpack, or a JSON Logic object; checked as you type.</small>
        </label>
      </div>
      <div className="actions">
        <button type="button" className="danger" onClick={onDelete} disabled={readOnly}>
          Delete edge
        </button>
      </div>
    </div>
  );
}

interface FlowPanelProps {
  doc: FlowDocument;
  name: string;
  description: string;
  problems: string[];
  warnings: string[];
  readOnly: boolean;
  onName: (name: string) => void;
  onDescription: (description: string) => void;
  onDoc: (change: (doc: FlowDocument) => FlowDocument, group: string) => void;
}

export function FlowPanel({ doc, name, description, problems, warnings, readOnly, onName, onDescription, onDoc }: FlowPanelProps) {
  const inputs = (doc.inputs ?? {}) as Record<string, { description?: string; default?: unknown }>;
  return (
    <div className="inspector" aria-label="Workflow">
      <h2>Workflow</h2>
      <Problems items={problems} label="Problems of the flow" />
      {warnings.length > 0 && (
        <ul className="warnings" aria-label="Warnings">
          {warnings.map((warning, index) => (
            <li key={index}>{warning}</li>
          ))}
        </ul>
      )}
      <div className="stack">
        <label>
          Name
          <input value={name} onChange={(event) => onName(event.target.value)} disabled={readOnly} maxLength={200} />
        </label>
        <label>
          Description
          <textarea rows={2} value={description} onChange={(event) => onDescription(event.target.value)} disabled={readOnly} />
        </label>
        <label>
          Entry node
          <select
            value={doc.entry ?? ""}
            disabled={readOnly}
            onChange={(event) =>
              onDoc((current) => {
                const next: FlowDocument = { ...current, entry: event.target.value };
                if (!event.target.value) delete next.entry;
                return next;
              }, "entry")
            }
          >
            <option value="">the first node</option>
            {doc.nodes.map((node) => (
              <option key={node.id}>{node.id}</option>
            ))}
          </select>
        </label>
      </div>
      <Section title="Inputs of the flow">
        <p className="hint">What a run asks for; nodes read them as {"{{ inputs.name }}"}.</p>
        {Object.entries(inputs).map(([key, input]) => (
          <div className="input-row" key={key}>
            <code>{key}</code>
            <input
              aria-label={`Description of input ${key}`}
              value={input?.description ?? ""}
              placeholder="description"
              disabled={readOnly}
              onChange={(event) =>
                onDoc((current) => ({ ...current, inputs: { ...(current.inputs as object), [key]: { ...input, description: event.target.value } } }), `flow-input:${key}`)
              }
            />
            <button
              type="button"
              aria-label={`Remove flow input ${key}`}
              disabled={readOnly}
              onClick={() =>
                onDoc((current) => withoutMember(current, "inputs", key), "flow-input-remove")
              }
            >
              ×
            </button>
          </div>
        ))}
        <AddName
          label="New flow input"
          button="Add flow input"
          taken={inputs}
          disabled={readOnly}
          onAdd={(key) => onDoc((current) => ({ ...current, inputs: { ...((current.inputs as object) ?? {}), [key]: {} } }), "flow-input-add")}
        />
      </Section>
      <FlowSettings doc={doc} readOnly={readOnly} onDoc={onDoc} />
      <p className="hint">Select a node or an edge to configure it.</p>
    </div>
  );
}

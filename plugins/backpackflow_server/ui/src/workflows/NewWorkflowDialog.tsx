// "New workflow": a name and a starting point -- an empty canvas (saved on the first Save) or
// one of the service's demo templates (created at once, then opened in the editor).
import { useState, type FormEvent } from "react";
import { useNavigate } from "react-router-dom";
import { useCreateWorkflow, useTemplates } from "../api/hooks";
import { Dialog } from "../components/Dialog";
import { ErrorState } from "../components/States";

const BLANK = "";

export function NewWorkflowDialog({ onClose }: { onClose: () => void }) {
  const navigate = useNavigate();
  const templates = useTemplates();
  const create = useCreateWorkflow();
  const [name, setName] = useState("");
  const [template, setTemplate] = useState(BLANK);

  async function submit(event: FormEvent) {
    event.preventDefault();
    const chosen = templates.data?.find((item) => item.name === template);
    const finalName = name.trim() || chosen?.name || "Untitled workflow";
    if (!chosen) {
      navigate(`/workflows/new?name=${encodeURIComponent(finalName)}`);
      return;
    }
    const saved = await create.mutateAsync({
      name: finalName,
      description: chosen.description,
      graph_json: chosen.graph_json,
    });
    navigate(`/workflows/${saved.id}`);
  }

  return (
    <Dialog title="New workflow" onClose={onClose}>
      <form className="stack" onSubmit={(event) => void submit(event).catch(() => undefined)}>
        <label>
          Name
          <input value={name} onChange={(event) => setName(event.target.value)} placeholder="My workflow" maxLength={200} />
        </label>
        <fieldset>
          <legend>Start from</legend>
          <label className="choice">
            <input type="radio" name="template" checked={template === BLANK} onChange={() => setTemplate(BLANK)} />
            <span>
              <strong>Empty canvas</strong>
              <small>add nodes from the palette</small>
            </span>
          </label>
          {templates.isPending && <p className="hint">Loading the demo templates…</p>}
          {templates.isError && <p className="field-error">The demo templates could not be loaded: {templates.error.message}</p>}
          {templates.data?.map((item) => (
            <label className="choice" key={item.name}>
              <input
                type="radio"
                name="template"
                checked={template === item.name}
                onChange={() => setTemplate(item.name)}
              />
              <span>
                <strong>{item.name}</strong>
                <small>
                  {item.description ?? ""} ({item.graph_json.nodes.length} nodes)
                </small>
              </span>
            </label>
          ))}
        </fieldset>
        {create.isError && <ErrorState error={create.error} title="The workflow was not created" />}
        <div className="actions">
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" className="primary" disabled={create.isPending}>
            Create
          </button>
        </div>
      </form>
    </Dialog>
  );
}

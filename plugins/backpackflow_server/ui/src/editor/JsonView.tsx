// The flow as JSON: what is saved, editable; Apply replaces the canvas with it (one undo step).
import { useEffect, useState } from "react";
import type { FlowDocument } from "../api/types";

export function JsonView({ doc, onApply, disabled }: { doc: FlowDocument; onApply: (doc: FlowDocument) => void; disabled?: boolean }) {
  const shown = JSON.stringify(doc, null, 2);
  const [text, setText] = useState(shown);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    setText(shown);
    setError(null);
  }, [shown]);

  function apply() {
    try {
      const parsed = JSON.parse(text) as unknown;
      if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("a flow is a JSON object");
      const candidate = parsed as FlowDocument;
      if (!Array.isArray(candidate.nodes)) throw new Error("$.nodes: a flow needs a nodes list");
      if (candidate.edges !== undefined && !Array.isArray(candidate.edges)) throw new Error("$.edges: a list of edges");
      setError(null);
      onApply(candidate);
    } catch (caught) {
      setError((caught as Error).message);
    }
  }

  return (
    <section className="json-view" aria-label="Flow JSON">
      <textarea
        className="code"
        aria-label="Flow JSON text"
        spellCheck={false}
        value={text}
        readOnly={disabled}
        onChange={(event) => setText(event.target.value)}
      />
      <div className="actions">
        {error && (
          <span role="alert" className="field-error">
            {error}
          </span>
        )}
        <button type="button" onClick={() => setText(shown)} disabled={text === shown}>
          Revert
        </button>
        <button type="button" className="primary" onClick={apply} disabled={disabled || text === shown}>
          Apply JSON
        </button>
      </div>
    </section>
  );
}

// "Run": a new run of a saved workflow, with a form generated from the flow's declared inputs
// (JSON Schemas; a flow without inputs gets the button alone). Used by the run view (a new run
// of the same workflow, filled with that run's inputs) and by the editor.
import { useMemo, useState } from "react";
// the Form component alone: the package index also brings in a test registry that imports Ajv
import Form from "@rjsf/core/lib/components/Form.js";
import type { FlowDocument } from "../api/types";
import { formValidator as validator } from "../components/formValidator";
import { ErrorState } from "../components/States";
import { useStartRun } from "./api";
import { hasInputs, inputsSchema } from "./logic";

/** RJSF logs a failed validation to the console unless told otherwise: the form shows it. */
const shownInline = () => undefined;

export function RunForm({
  flow,
  workflowId,
  initialInputs,
  onStarted,
}: {
  flow: FlowDocument;
  workflowId: string;
  initialInputs: Record<string, unknown>;
  onStarted: (id: string) => void;
}) {
  const start = useStartRun();
  const schema = useMemo(() => inputsSchema(flow), [flow]);
  const [inputs, setInputs] = useState<Record<string, unknown>>(initialInputs);
  const launch = (values: Record<string, unknown>) => {
    start.mutate({ workflowId, inputs: values }, { onSuccess: (created) => onStarted(created.id) });
  };
  return (
    <div className="run-form">
      {hasInputs(flow) ? (
        <Form
          schema={schema as object}
          formData={inputs}
          validator={validator}
          onChange={({ formData }) => setInputs((formData ?? {}) as Record<string, unknown>)}
          onSubmit={({ formData }) => launch((formData ?? {}) as Record<string, unknown>)}
          onError={shownInline}
          showErrorList={false}
          disabled={start.isPending}
        >
          <button type="submit" className="primary">
            Run
          </button>
        </Form>
      ) : (
        <button type="button" className="primary" onClick={() => launch({})} disabled={start.isPending}>
          Run
        </button>
      )}
      {start.error && <ErrorState error={start.error} title="The run was not started" />}
    </div>
  );
}

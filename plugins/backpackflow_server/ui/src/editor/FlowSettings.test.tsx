import { useState } from "react";
import { describe, expect, it } from "vitest";
import { fireEvent, render, screen, within } from "@testing-library/react";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import type { FlowDocument } from "../api/types";
import flowSchema from "../../../../../schemas/flow/2.0.0.json";
import { FlowSettings, settingSchema } from "./FlowSettings";

function Harness({ start }: { start: FlowDocument }) {
  const [doc, setDoc] = useState(start);
  const client = useState(() => {
    const made = new QueryClient();
    made.setQueryData(["flow-schema"], flowSchema);
    return made;
  })[0];
  return (
    <QueryClientProvider client={client}>
      <FlowSettings doc={doc} readOnly={false} onDoc={(change) => setDoc(change)} />
      <output data-testid="doc">{JSON.stringify(doc)}</output>
    </QueryClientProvider>
  );
}

describe("the flow's settings forms", () => {
  it("offers the sink and dependency types the schema names", () => {
    const sinks = settingSchema(flowSchema, "sinks");
    const sink = (sinks.$defs as Record<string, { properties: { type: { enum: string[] } } }>).sink;
    expect(sink.properties.type.enum).toEqual(expect.arrayContaining(["console", "file", "webhook"]));
    expect(settingSchema(flowSchema, "limits").properties).toHaveProperty("max_steps");
  });

  it("edits the limits, each problem on its field", () => {
    render(<Harness start={{ version: "2.0.0", nodes: [], edges: [], limits: { max_steps: 10 } }} />);
    const limits = screen.getByRole("region", { name: "Limits" });
    const steps = within(limits).getByLabelText(/max_steps/) as HTMLInputElement;
    expect(steps.value).toBe("10");
    fireEvent.change(steps, { target: { value: "0" } });
    expect(within(limits).getByText(/0 is less than 1/)).toBeTruthy();
    fireEvent.change(steps, { target: { value: "25" } });
    expect(JSON.parse(screen.getByTestId("doc").textContent ?? "{}").limits).toEqual({ max_steps: 25 });
  });
});

import { useState } from "react";
import type { RJSFSchema } from "@rjsf/utils";
import { describe, expect, it } from "vitest";
import { fireEvent, render, screen } from "@testing-library/react";
import type { NodeTypeInfo } from "../api/types";
import { ParamsForm } from "../editor/ParamsForm";
import { formValidator, schemaErrors } from "./formValidator";

// a params schema shaped as the service sends it: a root $ref into $defs, nested refs
const paramsSchema = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  $ref: "#/$defs/LlmParams",
  $defs: {
    LlmParams: {
      type: "object",
      required: ["prompt"],
      properties: {
        prompt: { type: "string", minLength: 1 },
        temperature: { type: "number", minimum: 0, maximum: 2 },
        retry: { $ref: "#/$defs/Retry" },
      },
    },
    Retry: { type: "object", required: ["attempts"], properties: { attempts: { type: "integer", minimum: 1 } } },
  },
};

describe("formValidator", () => {
  it("puts a missing required property on that property's field", () => {
    const schema: RJSFSchema = { type: "object", required: ["topic"], properties: { topic: { type: "string" }, nested: { type: "object", required: ["a b"] } } };
    const errors = schemaErrors(schema, { nested: {} });
    expect(errors.map((error) => error.property).sort()).toEqual([".nested.a b", ".topic"]);
    const data = formValidator.validateFormData({ nested: {} }, schema);
    expect(data.errorSchema.topic?.__errors).toEqual(["is a required property"]);
  });

  it("checks every keyword, following $refs into the root's $defs", () => {
    const root = paramsSchema.$defs.LlmParams as RJSFSchema;
    const withDefs = { ...root, $defs: paramsSchema.$defs } as RJSFSchema;
    const errors = schemaErrors(withDefs, { prompt: "", temperature: 3, retry: { attempts: 0 } });
    expect(errors.map((error) => error.property).sort()).toEqual([".prompt", ".retry.attempts", ".temperature"]);
    // RJSF asks about sub-schemas with the root passed apart
    expect(formValidator.isValid({ $ref: "#/$defs/Retry" }, { attempts: 2 }, withDefs)).toBe(true);
    expect(formValidator.isValid({ $ref: "#/$defs/Retry" }, { attempts: 0 }, withDefs)).toBe(false);
  });
});

const llm: NodeTypeInfo = { name: "llm", description: "", plugin: "test", dependencies: [], params_schema: paramsSchema, reads: {}, writes: {} };

function Harness() {
  const [params, setParams] = useState<Record<string, unknown>>({ prompt: "hi" });
  return <ParamsForm nodeType={llm} params={params} onChange={setParams} fieldErrors={{}} suggestions={[]} />;
}

describe("the editor's params form", () => {
  it("shows a value the schema refuses on its field as you type", () => {
    const { container } = render(<Harness />);
    const temperature = container.querySelector<HTMLInputElement>("#root_temperature");
    expect(temperature).not.toBeNull();
    fireEvent.change(temperature!, { target: { value: "5" } });
    const field = temperature!.closest(".form-group") as HTMLElement;
    expect(field.classList).toContain("has-error");
    expect(screen.getByText("5 is greater than 2.").closest(".form-group")).toBe(field);
    fireEvent.change(temperature!, { target: { value: "1" } });
    expect(screen.queryByText(/is greater than/)).toBeNull();
  });
});

const router: NodeTypeInfo = {
  name: "router", description: "", plugin: "test", dependencies: [], reads: {}, writes: {},
  params_schema: { type: "object", required: ["rule"], properties: { rule: { anyOf: [{ type: "string" }, { type: "object" }], description: "CEL or JSON Logic" } } },
};

function RouterHarness({ start, seen }: { start: Record<string, unknown>; seen: unknown[] }) {
  const [params, setParams] = useState<Record<string, unknown>>(start);
  return <ParamsForm nodeType={router} params={params} onChange={(next) => { seen.push(next.rule); setParams(next); }} fieldErrors={{}} suggestions={[]} />;
}

describe("a router's rule: CEL text or a JSON Logic object, in one field", () => {
  it("shows an object as JSON and reads JSON objects back as objects", () => {
    const seen: unknown[] = [];
    render(<RouterHarness start={{ rule: { "==": [1, 1] } }} seen={seen} />);
    const field = screen.getByLabelText(/rule/) as HTMLTextAreaElement;
    expect(JSON.parse(field.value)).toEqual({ "==": [1, 1] });
    fireEvent.change(field, { target: { value: "branch == 'deep'", selectionStart: 16 } });
    fireEvent.change(field, { target: { value: '{"var": "branch"}', selectionStart: 17 } });
    expect(seen).toEqual(["branch == 'deep'", { var: "branch" }]);
  });
});

import { useState } from "react";
import { describe, expect, it } from "vitest";
import { fireEvent, render, screen } from "@testing-library/react";
import { TemplateInput } from "./TemplateInput";

const choices = [
  { text: "inputs.topic", detail: "the subject" },
  { text: "node.fetch.output", detail: "the tool's result" },
];

function Harness() {
  const [value, setValue] = useState("");
  return <TemplateInput label="prompt" value={value} onChange={setValue} suggestions={choices} />;
}

function type(field: HTMLElement, text: string) {
  fireEvent.change(field, { target: { value: text, selectionStart: text.length } });
}

describe("TemplateInput", () => {
  it("offers completions inside {{ and inserts the chosen one", () => {
    render(<Harness />);
    const field = screen.getByRole("combobox", { name: "prompt" });
    type(field, "Tell me about ");
    expect(screen.queryByRole("listbox")).toBeNull();
    type(field, "Tell me about {{ inp");
    const options = screen.getAllByRole("option");
    expect(options.map((option) => option.textContent)).toEqual(["{{ inputs.topic }} the subject"]);
    fireEvent.keyDown(field, { key: "Enter" });
    expect(field).toHaveValue("Tell me about {{ inputs.topic }}");
    expect(screen.queryByRole("listbox")).toBeNull();
  });

  it("moves through the choices with the arrow keys", () => {
    render(<Harness />);
    const field = screen.getByRole("combobox", { name: "prompt" });
    type(field, "{{ ");
    fireEvent.keyDown(field, { key: "ArrowDown" });
    expect(screen.getByRole("option", { selected: true })).toHaveTextContent("node.fetch.output");
    fireEvent.mouseDown(screen.getByRole("option", { selected: true }));
    expect(field).toHaveValue("{{ node.fetch.output }}");
  });
});

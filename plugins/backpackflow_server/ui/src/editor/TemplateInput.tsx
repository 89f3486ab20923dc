// A text field for templates that offers `{{ inputs.x }}` / `{{ node.y.output }}` while typing
// `{{` (arrow keys and Enter, or a click, to pick one).
import { useId, useRef, useState, type KeyboardEvent } from "react";
import { complete, openTemplate, type Suggestion } from "./completion";

interface Props {
  id?: string;
  label: string;
  value: string;
  onChange: (value: string) => void;
  suggestions: Suggestion[];
  multiline?: boolean;
  disabled?: boolean;
  required?: boolean;
  invalid?: boolean;
  placeholder?: string;
}

export function TemplateInput({ id, label, value, onChange, suggestions, multiline, disabled, required, invalid, placeholder }: Props) {
  const ref = useRef<HTMLInputElement & HTMLTextAreaElement>(null);
  const listId = useId();
  const [open, setOpen] = useState<{ start: number; partial: string; caret: number } | null>(null);
  const [active, setActive] = useState(0);
  const matches = open ? suggestions.filter((s) => s.text.startsWith(open.partial) || s.text.includes(open.partial)) : [];

  function refresh(text: string, caret: number) {
    const found = openTemplate(text, caret);
    setOpen(found ? { ...found, caret } : null);
    setActive(0);
  }

  function pick(choice: Suggestion) {
    if (!open) return;
    const done = complete(value, open.start, open.caret, choice.text);
    onChange(done.text);
    setOpen(null);
    requestAnimationFrame(() => {
      ref.current?.focus();
      ref.current?.setSelectionRange(done.caret, done.caret);
    });
  }

  function onKeyDown(event: KeyboardEvent) {
    if (!open || matches.length === 0) return;
    if (event.key === "ArrowDown") setActive((active + 1) % matches.length);
    else if (event.key === "ArrowUp") setActive((active - 1 + matches.length) % matches.length);
    else if (event.key === "Enter" || event.key === "Tab") pick(matches[active]);
    else if (event.key === "Escape") setOpen(null);
    else return;
    event.preventDefault();
  }

  const common = {
    id,
    ref,
    value,
    disabled,
    required,
    placeholder,
    "aria-label": label,
    "aria-invalid": invalid || undefined,
    "aria-autocomplete": "list" as const,
    "aria-controls": open && matches.length ? listId : undefined,
    "aria-expanded": Boolean(open && matches.length),
    role: "combobox",
    onKeyDown,
    onBlur: () => setTimeout(() => setOpen(null), 150),
    onChange: (event: { target: { value: string; selectionStart: number | null } }) => {
      onChange(event.target.value);
      refresh(event.target.value, event.target.selectionStart ?? event.target.value.length);
    },
  };
  return (
    <div className="template-input">
      {multiline ? <textarea rows={4} {...common} /> : <input type="text" {...common} />}
      {open && matches.length > 0 && (
        <ul id={listId} role="listbox" className="completions" aria-label={`Completions for ${label}`}>
          {matches.map((choice, index) => (
            <li
              key={choice.text}
              role="option"
              aria-selected={index === active}
              onMouseDown={(event) => {
                event.preventDefault();
                pick(choice);
              }}
            >
              <code>{`{{ ${choice.text} }}`}</code> <small>{choice.detail}</small>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

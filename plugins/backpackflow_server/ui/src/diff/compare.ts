// Pure helpers of the run diff page (tested with Vitest).

/** A number with its sign: "+3", "-2", "0". */
export function signed(value: number): string {
  return value > 0 ? `+${value}` : String(value);
}

/** A prompt as text: chat messages as "role: content" blocks, anything else as JSON. */
export function promptText(
  prompt: unknown,
  messagesOf: (value: unknown) => { role: string; content: string }[] | null,
): string {
  const messages = messagesOf(prompt);
  if (messages) return messages.map((message) => `${message.role}: ${message.content}`).join("\n\n");
  return typeof prompt === "string" ? prompt : JSON.stringify(prompt, null, 2);
}

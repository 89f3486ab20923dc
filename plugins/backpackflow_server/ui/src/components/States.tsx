// Loading, error and empty states: each says what is happening or what the user can do.
import type { ReactNode } from "react";
import { ApiError } from "../api/client";

export function Loading({ what }: { what: string }) {
  return (
    <p className="state loading" role="status" aria-live="polite">
      Loading {what}…
    </p>
  );
}

/** What to do about an error, by its status. */
export function advice(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.status === 0) return "Check that the service is running, then retry.";
    if (error.status === 401) return "Your session ended: sign in again.";
    if (error.status === 403) return "Your token's role does not allow this: ask an admin for a token with more rights.";
    if (error.status === 404) return "It may have been deleted: go back to the workflow list.";
    if (error.status === 412) return "Someone saved a newer version: reload to see it.";
    if (error.status >= 500) return `The service failed${error.errorId ? ` (log entry ${error.errorId})` : ""}: retry, or ask the operator.`;
  }
  return "Retry, or reload the page.";
}

export function ErrorState({ error, retry, title }: { error: unknown; retry?: () => void; title?: string }) {
  const message = error instanceof Error ? error.message : String(error);
  return (
    <div className="state error" role="alert">
      <strong>{title ?? "Something went wrong"}:</strong> {message}
      <p>{advice(error)}</p>
      {retry && (
        <button type="button" onClick={retry}>
          Retry
        </button>
      )}
    </div>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <div className="state empty">{children}</div>;
}

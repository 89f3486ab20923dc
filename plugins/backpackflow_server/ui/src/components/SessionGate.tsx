// Who is signed in. The page exchanges an API token for an HttpOnly session cookie
// (POST /api/session); the token itself is never stored, and the CSRF token lives in memory.
import { createContext, useContext, useState, type FormEvent, type ReactNode } from "react";
import { QueryClient, useQuery, useQueryClient } from "@tanstack/react-query";
import { ApiError, currentSession, signIn, signOut } from "../api/client";
import { keys } from "../api/hooks";
import type { Session } from "../api/types";
import { ErrorState, Loading } from "./States";

interface SessionContextValue {
  session: Session;
  signOut: () => void;
}

const SessionContext = createContext<SessionContextValue | null>(null);

export function useSession(): SessionContextValue {
  const value = useContext(SessionContext);
  if (!value) throw new Error("useSession outside SessionGate");
  return value;
}

function SignIn({ onSignedIn }: { onSignedIn: (session: Session) => void }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const session = await signIn(token.trim());
      setToken("");
      onSignedIn(session);
    } catch (caught) {
      setError(caught instanceof Error ? caught.message : String(caught));
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="sign-in">
      <h1>backpackflow</h1>
      <form onSubmit={submit} aria-label="Sign in">
        <label htmlFor="token">API token</label>
        <input
          id="token"
          type="password"
          autoComplete="off"
          value={token}
          onChange={(event) => setToken(event.target.value)}
          placeholder="bpf_…"
          required
        />
        <button type="submit" disabled={busy || !token.trim()}>
          Sign in
        </button>
        {error && (
          <p role="alert" className="field-error">
            {error}
          </p>
        )}
        <p className="hint">
          Create a token with <code>backpackflow tokens create --role admin</code> (or serve with{" "}
          <code>--local-dev</code> on your own machine).
        </p>
      </form>
    </main>
  );
}

/** Drop every cached answer but the session's: they belonged to the previous principal. */
function forgetOthers(client: QueryClient): void {
  client.removeQueries({ predicate: (query) => query.queryKey[0] !== keys.session[0] });
}

export function SessionGate({ children }: { children: ReactNode }) {
  const client = useQueryClient();
  const query = useQuery({ queryKey: keys.session, queryFn: currentSession, retry: false, staleTime: Infinity });

  if (query.isPending) return <Loading what="your session" />;
  if (query.isError) return <ErrorState error={query.error} retry={() => query.refetch()} title="Cannot reach the service" />;
  const session = query.data;
  if (!session) {
    return (
      <SignIn
        onSignedIn={(signedIn) => {
          forgetOthers(client);
          client.setQueryData(keys.session, signedIn);
        }}
      />
    );
  }
  const value: SessionContextValue = {
    session,
    signOut: () => {
      void signOut().finally(() => {
        forgetOthers(client);
        client.setQueryData(keys.session, null);
      });
    },
  };
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

/** A 401 from any query means the session ended: show the sign-in form again. */
export function isSessionEnded(error: unknown): boolean {
  return error instanceof ApiError && error.status === 401;
}

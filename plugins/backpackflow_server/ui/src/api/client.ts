// The typed API client: same-origin fetch with the session cookie, the CSRF token on every
// change, and errors turned into ApiError (status, message, and the 422 problems with their
// JSON paths) so every page can say what went wrong and where.
import type { Problem, Session } from "./types";

export class ApiError extends Error {
  readonly status: number;
  readonly problems: Problem[];
  readonly errorId: string | null;

  constructor(status: number, message: string, problems: Problem[] = [], errorId: string | null = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.problems = problems;
    this.errorId = errorId;
  }
}

let csrfToken: string | null = null;

/** Remember the session's CSRF token (kept in memory only: never in storage). */
export function setCsrfToken(token: string | null): void {
  csrfToken = token;
}

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export interface RequestOptions {
  method?: string;
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export interface ApiResponse<T> {
  data: T;
  headers: Headers;
  status: number;
}

function describe(status: number, body: unknown): { message: string; problems: Problem[]; errorId: string | null } {
  if (body && typeof body === "object" && "detail" in body) {
    const detail = (body as { detail: unknown }).detail;
    const errorId = ((body as { error_id?: unknown }).error_id as string | undefined) ?? null;
    if (typeof detail === "string") return { message: detail, problems: [], errorId };
    if (Array.isArray(detail)) {
      const problems = detail as Problem[];
      const message = problems.map((p) => (p.path ? `${p.path}: ${p.msg}` : p.msg)).join("; ");
      return { message, problems, errorId };
    }
  }
  return { message: `the service answered ${status}`, problems: [], errorId: null };
}

export async function request<T>(path: string, options: RequestOptions = {}): Promise<ApiResponse<T>> {
  const method = options.method ?? "GET";
  const headers: Record<string, string> = { Accept: "application/json", ...options.headers };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if (UNSAFE.has(method) && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      credentials: "same-origin",
      signal: options.signal,
    });
  } catch (error) {
    if (error instanceof DOMException && error.name === "AbortError") throw error;
    throw new ApiError(0, "the service cannot be reached: is `backpackflow serve` running?");
  }
  const text = await response.text();
  let body: unknown = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  }
  if (!response.ok) {
    const { message, problems, errorId } = describe(response.status, body);
    throw new ApiError(response.status, message, problems, errorId);
  }
  return { data: body as T, headers: response.headers, status: response.status };
}

export async function getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
  return (await request<T>(path, { signal })).data;
}

export async function sendJson<T>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<T> {
  return (await request<T>(path, { method, body, headers })).data;
}

// --- the session ---

export async function currentSession(): Promise<Session | null> {
  try {
    const session = await getJson<Session>("/api/session");
    setCsrfToken(session.csrf_token);
    return session;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return null;
    throw error;
  }
}

export async function signIn(token: string): Promise<Session> {
  const session = await sendJson<Session>("POST", "/api/session", { token });
  setCsrfToken(session.csrf_token);
  return session;
}

export async function signOut(): Promise<void> {
  await request<null>("/api/session", { method: "DELETE" });
  setCsrfToken(null);
}

import { afterEach, describe, expect, it, vi } from "vitest";
import { ApiError, request, setCsrfToken } from "./client";

function answer(status: number, body: unknown) {
  return vi.fn(async () => new Response(body === undefined ? "" : JSON.stringify(body), { status }));
}

afterEach(() => {
  vi.unstubAllGlobals();
  setCsrfToken(null);
});

describe("request", () => {
  it("sends the CSRF token with changes only", async () => {
    const fetch = answer(200, { ok: true });
    vi.stubGlobal("fetch", fetch);
    setCsrfToken("csrf-1");
    await request("/api/workflows", { method: "POST", body: { name: "x" } });
    await request("/api/workflows");
    const [post, get] = fetch.mock.calls as unknown as [string, RequestInit][];
    expect((post[1].headers as Record<string, string>)["X-CSRF-Token"]).toBe("csrf-1");
    expect((get[1].headers as Record<string, string>)["X-CSRF-Token"]).toBeUndefined();
  });

  it("turns a 422 into an ApiError naming each JSON path", async () => {
    vi.stubGlobal(
      "fetch",
      answer(422, { detail: [{ loc: ["body"], path: "$.graph_json.nodes[0].params.model", msg: "required", type: "missing" }] }),
    );
    const error = await request("/api/workflows", { method: "POST", body: {} }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).status).toBe(422);
    expect((error as ApiError).message).toBe("$.graph_json.nodes[0].params.model: required");
    expect((error as ApiError).problems).toHaveLength(1);
  });

  it("says the service cannot be reached when fetch fails", async () => {
    vi.stubGlobal("fetch", vi.fn(async () => Promise.reject(new TypeError("Failed to fetch"))));
    const error = (await request("/api/workflows").catch((e: unknown) => e)) as ApiError;
    expect(error.status).toBe(0);
    expect(error.message).toMatch(/cannot be reached/);
  });
});

// The run's trace. A finished run shows at once from its stored row (GET /api/runs/{id}: the
// steps and totals; RunTrace.fromDetail), its fallbacks and cache hits fetched beside it, its
// events paged in only as the Events list shows them (EventPages). An active run is followed
// live: the stream (Server-Sent Events) from its first event, folded into a RunTrace, so the
// view is the same as watching it from the start. EventSource reconnects by itself with
// Last-Event-ID (the service resumes exactly after it); events are folded in batches, one
// render per animation frame.
import { useCallback, useEffect, useRef, useState } from "react";
import { getJson } from "../api/client";
import type { EdgeConfig, RunDetail, TraceEvent, TracePage } from "../api/types";
import { EventPages, PAGE } from "./eventPages";
import { edgeAction, RunTrace } from "./trace";

export interface RunEnd {
  status: string;
  finished_at: string | null;
}

export interface LiveTrace {
  trace: RunTrace;
  /** Bumped whenever the trace changed (use it as a dependency). */
  version: number;
  /** The stream is open (the run is active or its events are still replaying). */
  live: boolean;
  /** A finished run's events, paged in as shown (null: they are in ``trace.events``). */
  pages: EventPages | null;
  /** Follow the run again after it paused and was answered (its stream had ended). */
  reconnect: () => void;
}

const FINISHED = new Set(["succeeded", "failed", "canceled"]);

function tracePage(runId: string, after: number, limit: number, types: readonly string[] = []): Promise<TracePage> {
  const query = new URLSearchParams({ after: String(after), limit: String(limit) });
  for (const type of types) query.append("type", type);
  return getJson<TracePage>(`/api/runs/${encodeURIComponent(runId)}/trace?${query}`);
}

/** All of a run's stored events of ``types``, page after page. */
async function eventsOfTypes(runId: string, types: readonly string[]): Promise<TraceEvent[]> {
  const events: TraceEvent[] = [];
  let after = 0;
  for (;;) {
    const page = await tracePage(runId, after, PAGE, types);
    events.push(...page.items);
    if (!page.has_more) return events;
    after = page.next_after;
  }
}

export function useRunTrace(runId: string, edges: EdgeConfig[] | null, detail: RunDetail | undefined): LiveTrace {
  const [trace, setTrace] = useState(() => new RunTrace(edges ?? []));
  const [version, setVersion] = useState(0);
  const [live, setLive] = useState(false);
  const [pages, setPages] = useState<EventPages | null>(null);
  const [generation, setGeneration] = useState(0);
  const traceRef = useRef(trace);
  const detailRef = useRef(detail);
  const seededRef = useRef(false);
  detailRef.current = detail;
  const edgesKey = edges ? JSON.stringify(edges.map((e) => [e.from, e.to, edgeAction(e), e.when ?? null])) : null;

  useEffect(() => {
    // a new run or the flow's edges became known: start from scratch, from the stored row if
    // the run has finished (its row and stored events are final then)
    const stored = detailRef.current;
    const seeded = edgesKey !== null && stored !== undefined && stored.id === runId && FINISHED.has(stored.status);
    const fresh = seeded ? RunTrace.fromDetail(stored, edges ?? []) : new RunTrace(edges ?? []);
    traceRef.current = fresh;
    seededRef.current = seeded;
    setTrace(fresh);
    setVersion((v) => v + 1);
    if (!seeded) {
      setPages(null);
      return undefined;
    }
    let gone = false;
    const bump = () => {
      if (!gone) setVersion((v) => v + 1);
    };
    setPages(new EventPages(stored.event_count, stored.event_count === stored.last_seq, (after, limit) => tracePage(runId, after, limit), bump));
    eventsOfTypes(runId, RunTrace.MARK_TYPES).then(
      (marks) => {
        if (gone) return;
        fresh.applyMarks(marks);
        setVersion(fresh.version);
      },
      () => undefined, // the figures stay "…"; the steps and totals are shown
    );
    return () => {
      gone = true;
    };
  }, [runId, edgesKey]);

  useEffect(() => {
    if (edgesKey === null) return undefined;
    const current = traceRef.current;
    if (seededRef.current) return undefined; // a finished run's stored row: nothing more will come
    const after = current.lastSeq;
    const source = new EventSource(`/api/runs/${encodeURIComponent(runId)}/stream?after=${after}`);
    let pending: TraceEvent[] = [];
    let frame: number | null = null;
    const flush = () => {
      frame = null;
      if (pending.length === 0) return;
      const batch = pending;
      pending = [];
      current.apply(batch);
      setVersion(current.version);
    };
    const schedule = () => {
      if (frame === null) frame = window.requestAnimationFrame(flush);
    };
    setLive(true);
    source.addEventListener("trace", (message) => {
      pending.push(JSON.parse((message as MessageEvent<string>).data) as TraceEvent);
      schedule();
    });
    source.addEventListener("end", (message) => {
      source.close();
      if (frame !== null) window.cancelAnimationFrame(frame);
      flush();
      const end = JSON.parse((message as MessageEvent<string>).data) as RunEnd;
      current.finish(end.status, end.finished_at ? Date.parse(end.finished_at) / 1000 : null);
      setVersion(current.version);
      setLive(false);
    });
    return () => {
      source.close();
      if (frame !== null) window.cancelAnimationFrame(frame);
      setLive(false);
    };
  }, [runId, edgesKey, generation]);

  const reconnect = useCallback(() => setGeneration((g) => g + 1), []);
  return { trace, version, live, pages, reconnect };
}

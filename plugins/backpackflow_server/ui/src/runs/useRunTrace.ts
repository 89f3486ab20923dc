// The run's trace, live: the stream (Server-Sent Events) from the first event, folded into a
// RunTrace. A finished run's stream replays everything, so a reload or a shared link shows the
// same view as watching live. EventSource reconnects by itself with Last-Event-ID (the service
// resumes exactly after it); events are folded in batches, one render per animation frame.
import { useCallback, useEffect, useRef, useState } from "react";
import type { EdgeConfig, TraceEvent } from "../api/types";
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
  /** Follow the run again after it paused and was answered (its stream had ended). */
  reconnect: () => void;
}

export function useRunTrace(runId: string, edges: EdgeConfig[] | null): LiveTrace {
  const [trace, setTrace] = useState(() => new RunTrace(edges ?? []));
  const [version, setVersion] = useState(0);
  const [live, setLive] = useState(false);
  const [generation, setGeneration] = useState(0);
  const traceRef = useRef(trace);
  const edgesKey = edges ? JSON.stringify(edges.map((e) => [e.from, e.to, edgeAction(e), e.when ?? null])) : null;

  useEffect(() => {
    // a new run or the flow's edges became known: fold from scratch
    const fresh = new RunTrace(edges ?? []);
    traceRef.current = fresh;
    setTrace(fresh);
    setVersion((v) => v + 1);
  }, [runId, edgesKey]);

  useEffect(() => {
    if (edgesKey === null) return undefined;
    const current = traceRef.current;
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
  return { trace, version, live, reconnect };
}

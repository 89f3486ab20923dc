// The run view (/runs/:id; reload-safe and shareable: everything comes from the URL and the
// service). A summary header with live totals and elapsed time, "Run" (a form generated from
// the flow's declared inputs) and "Cancel run"; the graph, live; the timeline of steps with
// status chips (virtualised, following new steps until the user scrolls); the opened step's
// detail; approving or answering a paused run; forking from a step or a commit; time travel.
import { useEffect, useRef, useState } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
// the Form component alone: the package index also brings in a test registry that imports Ajv
import Form from "@rjsf/core/lib/components/Form.js";
import { formValidator as validator } from "../components/formValidator";
import { useQueryClient } from "@tanstack/react-query";
import { keys, useRun } from "../api/hooks";
import type { RunDetail } from "../api/types";
import { ErrorState, Loading } from "../components/States";
import { money } from "./decimal";
import { allCommits, useCancelRun, useForkRun, useResumeRun, useRunWorkflow, useRunWorkflowVersion } from "./api";
import { RunForm } from "./RunForm";
import { forkCommit, isApproval } from "./logic";
import { RunGraph } from "./RunGraph";
import { StepDetailPane } from "./StepDetail";
import { TimeTravel } from "./TimeTravel";
import { elapsedMs, formatMs, type RunTrace, type StepView } from "./trace";
import { useRunTrace } from "./useRunTrace";
import { VirtualList } from "./VirtualList";
import "./runs.css";

/** RJSF logs a failed validation to the console unless told otherwise: the form shows it. */
const shownInline = () => undefined;
const ACTIVE = new Set(["queued", "running", "paused"]);
const VIEWS = ["Timeline", "Events", "Time travel"] as const;
type View = (typeof VIEWS)[number];

function useNow(ticking: boolean): number {
  const [now, setNow] = useState(() => Date.now() / 1000);
  useEffect(() => {
    if (!ticking) return undefined;
    const timer = window.setInterval(() => setNow(Date.now() / 1000), 250);
    return () => window.clearInterval(timer);
  }, [ticking]);
  return ticking ? now : Date.now() / 1000;
}

function Summary({ run, trace, live }: { run: RunDetail; trace: RunTrace; live: boolean }) {
  const status = trace.status ?? run.status;
  const started = trace.startedAt ?? (run.started_at ? Date.parse(run.started_at) / 1000 : null);
  const ended = trace.endedAt ?? (run.finished_at ? Date.parse(run.finished_at) / 1000 : null);
  const now = useNow(live && ended === null);
  const totals = trace.totals;
  return (
    <dl className="run-summary" aria-label="Run summary">
      <dt>status</dt>
      <dd>
        <span className={`chip status-${status}`} data-testid="run-status">
          {status}
        </span>
      </dd>
      <dt>elapsed</dt>
      <dd data-testid="run-elapsed">{formatMs(elapsedMs(started, ended, now))}</dd>
      <dt>steps</dt>
      <dd data-testid="run-steps">{trace.order.length}</dd>
      <dt>tokens</dt>
      <dd data-testid="run-tokens">
        {totals.tokensInput} in / {totals.tokensOutput} out
      </dd>
      <dt>cost</dt>
      <dd data-testid="run-cost">{money(totals.cost)}</dd>
      <dt>cache</dt>
      <dd data-testid="run-cache">
        {trace.complete ? `${totals.cacheHits} hit${totals.cacheHits === 1 ? "" : "s"}, saved ${money(totals.costSaved)}` : "…"}
      </dd>
      <dt>retries</dt>
      <dd data-testid="run-retries">{totals.retries}</dd>
      <dt>fallbacks</dt>
      <dd data-testid="run-fallbacks">{trace.complete ? totals.fallbacks : "…"}</dd>
    </dl>
  );
}

function StepRow({ step, selected, onOpen }: { step: StepView; selected: boolean; onOpen: () => void }) {
  const status = step.status === "succeeded" && step.cacheHit ? "cache_hit" : step.status;
  return (
    <button
      type="button"
      className={`step-row${selected ? " selected" : ""}${step.parentStep !== null ? " nested" : ""}`}
      onClick={onOpen}
      aria-label={`step ${step.step} ${step.nodeId} ${status.replace("_", " ")}`}
      aria-pressed={selected}
    >
      <span className="step-no">{step.step}</span>
      <span className="step-node">{step.nodeId}</span>
      <span className={`chip status-${status}`}>{status.replace("_", " ")}</span>
      {step.retries > 0 && <span className="chip status-retry">{step.retries} retr{step.retries === 1 ? "y" : "ies"}</span>}
      {step.fallbacks.length > 0 && <span className="chip status-fallback">fallback</span>}
      <span className="step-figures">
        {formatMs(step.latencyMs)} · {step.tokensInput + step.tokensOutput} tok · {money(step.cost)}
      </span>
    </button>
  );
}

function Question({ trace, runId, onAnswered }: { trace: RunTrace; runId: string; onAnswered: () => void }) {
  const resume = useResumeRun(runId);
  const question = trace.question;
  if (!question) return null;
  const answer = (value: unknown) => resume.mutate(value, { onSuccess: onAnswered });
  return (
    <section className="question" aria-label="Paused for an answer">
      <h3>Paused at {question.nodeId}: {question.prompt}</h3>
      {isApproval(question.schema) ? (
        <div className="actions">
          <button type="button" className="primary" onClick={() => answer({ approved: true })} disabled={resume.isPending}>
            Approve
          </button>
          <button type="button" onClick={() => answer({ approved: false })} disabled={resume.isPending}>
            Reject
          </button>
        </div>
      ) : (
        <Form
          schema={(question.schema ?? {}) as object}
          validator={validator}
          onSubmit={({ formData }) => answer(formData)}
          onError={shownInline}
          showErrorList={false}
          disabled={resume.isPending}
        >
          <button type="submit">Send answer</button>
        </Form>
      )}
      {resume.error && <ErrorState error={resume.error} title="The answer was refused" />}
    </section>
  );
}

export default function RunPage() {
  const { id = "" } = useParams();
  const navigate = useNavigate();
  const client = useQueryClient();
  const run = useRun(id);
  const workflowId = run.data?.workflow_id ?? null;
  const workflow = useRunWorkflow(workflowId);
  // the graph the run ran (its version), else the current one; Run starts the current one
  const ran = useRunWorkflowVersion(workflowId, run.data?.workflow_version ?? null);
  const flow = workflowId && workflow.data ? workflow.data.graph_json : null;
  const versionKnown = ran.data !== undefined || ran.isError || run.data?.workflow_version === null;
  const graph = ran.data ? ran.data.graph_json : versionKnown ? flow : null;
  const graphPending = workflowId !== null && (workflow.isPending || (!versionKnown && ran.isPending));
  const edges = run.data ? (graph?.edges ?? (graphPending ? null : [])) : null;
  const { trace, version, live, pages, reconnect } = useRunTrace(id, edges, run.data);
  const cancel = useCancelRun(id);
  const fork = useForkRun(id);
  const [selected, setSelected] = useState<number | null>(null);
  const [view, setView] = useState<View>("Timeline");
  const [forkError, setForkError] = useState<unknown>(null);

  useEffect(() => {
    setSelected(null);
    setView("Timeline");
  }, [id]);
  const wasLive = useRef(false);
  useEffect(() => {
    // the run ended or paused while followed: its stored row (totals, steps) is read again
    if (wasLive.current && !live) void client.invalidateQueries({ queryKey: keys.run(id) });
    wasLive.current = live;
  }, [live, client, id]);

  if (run.isPending) return <Loading what="the run" />;
  if (run.error) return <ErrorState error={run.error} retry={() => void run.refetch()} title={`Run ${id}`} />;
  const detail = run.data;
  const status = trace.status ?? detail.status;
  const selectedStep = selected !== null ? trace.steps.get(selected) ?? null : null;
  const opened = (nodeId: string) => {
    const latest = [...trace.order].reverse().find((step) => step.nodeId === nodeId && step.parentStep === null);
    if (latest) setSelected(latest.step);
  };
  const forkAt = (commitId: string) =>
    fork.mutate(commitId, { onSuccess: (created) => navigate(`/runs/${created.id}`), onError: setForkError });
  const forkFromStep = async (step: number) => {
    setForkError(null);
    try {
      const commit = forkCommit(await allCommits(id), step);
      if (!commit) throw new Error(`step ${step} has no commit to fork from`);
      forkAt(commit.commit_id);
    } catch (error) {
      setForkError(error);
    }
  };

  return (
    <div className="run-page">
      <header className="run-header">
        <h1>
          Run <code>{detail.id}</code>
        </h1>
        <p className="muted">
          {detail.workflow_id ? <Link to={`/workflows/${detail.workflow_id}`}>{detail.workflow_name ?? "workflow"}</Link> : "(workflow deleted)"}
          {detail.workflow_version !== null && ` · version ${detail.workflow_version}`}
          {detail.forked_from && (
            <>
              {" · forked from "}
              <Link to={`/runs/${detail.forked_from.run_id}`}>{detail.forked_from.run_id}</Link>
            </>
          )}
          {" · "}
          <Link to={`/runs/diff?a=${encodeURIComponent(detail.id)}`}>Compare with another run</Link>
        </p>
        <Summary run={detail} trace={trace} live={live} />
        <div className="actions">
          {flow && detail.workflow_id && (
            <RunForm flow={flow} workflowId={detail.workflow_id} initialInputs={detail.input_vars ?? {}} onStarted={(created) => navigate(`/runs/${created}`)} />
          )}
          <button type="button" onClick={() => cancel.mutate()} disabled={!ACTIVE.has(status) || cancel.isPending}>
            Cancel run
          </button>
        </div>
        {cancel.error && <ErrorState error={cancel.error} title="The run was not canceled" />}
        {forkError !== null && <ErrorState error={forkError} title="The fork was not started" />}
        {detail.error_summary && status === "failed" && <p className="error">{detail.error_summary}</p>}
      </header>
      {status === "paused" && <Question trace={trace} runId={id} onAnswered={reconnect} />}
      <div className="run-body">
        <div className="run-left">
          {graph && workflow.data && ran.data === null && detail.workflow_version !== null && detail.workflow_version !== workflow.data.version && (
            <p className="muted" role="note">
              Version {detail.workflow_version}, which this run ran, is not kept: the graph is the current version {workflow.data.version}.
            </p>
          )}
          {graph ? (
            <RunGraph
              flow={graph}
              nodeStatus={trace.nodeStatus}
              takenEdges={trace.takenEdges}
              version={version}
              selectedNode={selectedStep?.nodeId ?? null}
              onSelectNode={opened}
            />
          ) : (
            <p className="muted">{graphPending ? "Loading the graph…" : "The workflow was deleted: no graph."}</p>
          )}
          <div role="tablist" aria-label="Run views">
            {VIEWS.map((name) => (
              <button key={name} type="button" role="tab" aria-selected={view === name} className={view === name ? "tab active" : "tab"} onClick={() => setView(name)}>
                {name}
              </button>
            ))}
          </div>
          {view === "Timeline" && (
            <VirtualList
              count={trace.order.length}
              rowHeight={34}
              label="Timeline"
              testId="timeline"
              version={version}
              renderRow={(index) => {
                const step = trace.order[index];
                return <StepRow step={step} selected={step.step === selected} onOpen={() => setSelected(step.step)} />;
              }}
            />
          )}
          {view === "Events" && (
            <VirtualList
              count={pages ? pages.count : trace.events.length}
              rowHeight={24}
              label="Events"
              testId="events"
              version={version}
              renderRow={(index) => {
                const event = pages ? pages.get(index) : trace.events[index];
                if (!event) return <div className="event-row muted">{pages?.error ? "the events could not be read" : "…"}</div>;
                return (
                  <div className="event-row">
                    <span className="seq">{event.seq}</span>
                    <span className={`chip type-${event.type}`}>{event.type}</span>
                    <span>{event.node_id ?? ""}</span>
                  </div>
                );
              }}
            />
          )}
          {view === "Time travel" && <TimeTravel runId={id} refreshKey={`${status}-${live}`} onFork={forkAt} />}
        </div>
        <div className="run-right">
          {selectedStep ? (
            <StepDetailPane runId={id} step={selectedStep} onFork={forkFromStep} forking={fork.isPending} />
          ) : (
            <p className="muted">Open a step in the timeline or the graph to see its prompt, response and figures.</p>
          )}
        </div>
      </div>
    </div>
  );
}

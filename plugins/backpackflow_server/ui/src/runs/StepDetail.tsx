// One step, opened from the timeline or the graph: its figures (tokens, exact cost, latency,
// attempts, retries, fallbacks, cache), then tabs: Prompt, Response, Output, Backpack (reads
// and writes), Raw JSON (its events). "Fork from here" starts a new run after this step.
import { useState } from "react";
import { ErrorState, Loading } from "../components/States";
import { money } from "./decimal";
import { type StepDetail as Detail, useStepDetail } from "./api";
import { chatMessages, pretty } from "./logic";
import { formatMs, type StepView } from "./trace";

const TABS = ["Prompt", "Response", "Output", "Backpack", "Raw JSON"] as const;
type Tab = (typeof TABS)[number];

function Messages({ value }: { value: unknown }) {
  const messages = chatMessages(value);
  if (!messages) return <pre className="json">{pretty(value)}</pre>;
  return (
    <ol className="messages">
      {messages.map((message, index) => (
        <li key={index} className={`message role-${message.role}`}>
          <span className="role">{message.role}</span>
          <pre>{message.content}</pre>
        </li>
      ))}
    </ol>
  );
}

function PromptTab({ detail }: { detail: Detail }) {
  if (detail.llm_calls.length === 0 && detail.messages) {
    return (
      <div>
        <p className="muted">
          {detail.cache_hits.length ? "Answered from the response cache (no call made); the prompt as prepared:" : "No call made; the prompt as prepared:"}
        </p>
        <Messages value={detail.messages} />
      </div>
    );
  }
  if (detail.llm_calls.length === 0) {
    return (
      <div>
        <p className="muted">This step made no LLM call. What its prep produced:</p>
        <pre className="json">{pretty(detail.input)}</pre>
      </div>
    );
  }
  return (
    <div>
      {detail.llm_calls.map((call, index) => (
        <section key={index} className="llm-call">
          <h4>
            Call {index + 1}: {call.provider}/{call.model}{" "}
            {call.response ? <span className="chip status-succeeded">answered</span> : <span className="chip status-failed">failed</span>}
          </h4>
          <Messages value={call.messages} />
        </section>
      ))}
    </div>
  );
}

function ResponseTab({ detail }: { detail: Detail }) {
  const response = detail.response;
  if (!response) return <p className="muted">No response (yet).</p>;
  return (
    <div>
      <pre className="response-text">{String(response.text ?? "")}</pre>
      {typeof response.refusal === "string" && <p className="error">Refused: {response.refusal}</p>}
      <dl className="figures">
        <dt>model</dt>
        <dd>
          {String(response.provider)}/{String(response.model)}
        </dd>
        <dt>finish reason</dt>
        <dd>{String(response.finish_reason ?? "–")}</dd>
        <dt>cost</dt>
        <dd>{money(String(response.cost ?? "0"))}</dd>
      </dl>
      <h4>Raw response</h4>
      <pre className="json">{pretty(response)}</pre>
    </div>
  );
}

function BackpackTab({ detail }: { detail: Detail }) {
  return (
    <div className="backpack-io">
      <h4>Reads ({detail.reads.length})</h4>
      {detail.reads.length === 0 ? (
        <p className="muted">none</p>
      ) : (
        <ul>
          {detail.reads.map((read, index) => (
            <li key={index}>
              <code>{String(read.key)}</code> {read.found ? "" : "(not found)"} {read.access_granted === false ? "(denied)" : ""}
            </li>
          ))}
        </ul>
      )}
      <h4>Writes ({detail.writes.length})</h4>
      {detail.writes.length === 0 ? (
        <p className="muted">none</p>
      ) : (
        <ul>
          {detail.writes.map((write, index) => (
            <li key={index}>
              <code>{String(write.key)}</code> {String(write.op)} v{String(write.version)}: <code>{String(write.value_summary ?? "")}</code>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

function Figures({ step, detail }: { step: StepView; detail: Detail | undefined }) {
  const row = detail?.step;
  return (
    <dl className="figures" aria-label="Step figures">
      <dt>status</dt>
      <dd>
        <span className={`chip status-${step.status}`}>{step.status}</span>
        {step.cacheHit && <span className="chip status-cache_hit">cache hit</span>}
      </dd>
      <dt>tokens</dt>
      <dd>
        {step.tokensInput} in / {step.tokensOutput} out
      </dd>
      <dt>cost</dt>
      <dd data-testid="step-cost">{money(row?.cost ?? step.cost)}</dd>
      <dt>latency</dt>
      <dd>{formatMs(row?.latency_ms ?? step.latencyMs)}</dd>
      <dt>attempts</dt>
      <dd>{row?.attempts ?? step.attempts}</dd>
      <dt>retries</dt>
      <dd data-testid="step-retries">
        {step.retries}
        {detail?.retries.map((retry, index) => (
          <div key={index} className="muted">
            attempt {String(retry.attempt)}: {String(retry.error_type)} ({String(retry.provider ?? "")})
          </div>
        ))}
      </dd>
      <dt>fallbacks</dt>
      <dd data-testid="step-fallbacks">
        {step.fallbacks.length === 0
          ? "none"
          : step.fallbacks.map((fallback, index) => (
              <div key={index}>
                {fallback.from} → {fallback.to}
                <div className="muted">{fallback.reason}</div>
              </div>
            ))}
      </dd>
      <dt>cache</dt>
      <dd data-testid="step-cache">{step.cacheHit ? `hit, saved ${money(detail?.cost_saved ?? step.costSaved)}` : "miss"}</dd>
      {step.action !== null && (
        <>
          <dt>action</dt>
          <dd>{step.action}</dd>
        </>
      )}
      {step.error && (
        <>
          <dt>error</dt>
          <dd className="error">{step.error}</dd>
        </>
      )}
    </dl>
  );
}

interface Props {
  runId: string;
  step: StepView;
  onFork?: (step: number) => void;
  forking?: boolean;
}

export function StepDetailPane({ runId, step, onFork, forking }: Props) {
  const [tab, setTab] = useState<Tab>("Prompt");
  const detail = useStepDetail(runId, step.step, step.status);
  return (
    <section className="step-detail" aria-label={`Step ${step.step}: ${step.nodeId}`}>
      <header>
        <h3>
          Step {step.step}: {step.nodeId}
          {step.nodeType && <small> ({step.nodeType})</small>}
        </h3>
        {onFork && step.parentStep === null && (
          <button type="button" onClick={() => onFork(step.step)} disabled={forking}>
            Fork from here
          </button>
        )}
      </header>
      <Figures step={step} detail={detail.data} />
      <div role="tablist" aria-label="Step detail">
        {TABS.map((name) => (
          <button
            key={name}
            type="button"
            role="tab"
            aria-selected={tab === name}
            className={tab === name ? "tab active" : "tab"}
            onClick={() => setTab(name)}
          >
            {name}
          </button>
        ))}
      </div>
      <div role="tabpanel" aria-label={tab} className="tab-panel">
        {detail.isPending && <Loading what="the step" />}
        {detail.error && <ErrorState error={detail.error} retry={() => void detail.refetch()} />}
        {detail.data && tab === "Prompt" && <PromptTab detail={detail.data} />}
        {detail.data && tab === "Response" && <ResponseTab detail={detail.data} />}
        {detail.data && tab === "Output" && (
          <pre className="json">{detail.data.has_output ? pretty(detail.data.output) : "No output (yet)."}</pre>
        )}
        {detail.data && tab === "Backpack" && <BackpackTab detail={detail.data} />}
        {detail.data && tab === "Raw JSON" && (
          <pre className="json raw">
            {pretty({ ...detail.data.step, events: detail.data.events })}
            {detail.data.events_truncated ? "\n… more events: page the trace" : ""}
          </pre>
        )}
      </div>
    </section>
  );
}

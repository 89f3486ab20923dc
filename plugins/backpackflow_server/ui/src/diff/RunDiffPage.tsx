// The run diff (/runs/diff?a=RUN&b=RUN): two runs side by side, step by step, e.g. before and
// after a prompt change. The service lines the steps up (GET /api/runs/{a}/compare/{b}); each
// row shows both sides' prompt, output, tokens, cost and latency, the fields that differ marked.
import { type FormEvent, useState } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { Empty, ErrorState, Loading } from "../components/States";
import { type CompareSide, type ComparePair, useRunCompare, useRunSummary, useWorkflowRuns } from "../runs/api";
import { money } from "../runs/decimal";
import { chatMessages, pretty } from "../runs/logic";
import { formatMs } from "../runs/trace";
import { promptText, signed } from "./compare";
import "../runs/runs.css";

function Side({ side, changed, label }: { side: CompareSide | null; changed: string[]; label: string }) {
  if (!side) return <td className="diff-missing">not in run {label}</td>;
  const mark = (field: string) => (changed.includes(field) ? "changed" : undefined);
  return (
    <td>
      <div>
        <span className={`chip status-${side.cache_hit && side.status === "succeeded" ? "cache_hit" : side.status}`}>{side.status}</span>{" "}
        <span className={mark("model")}>{side.model ?? ""}</span>
      </div>
      {side.prompt !== null && (
        <details open={changed.includes("prompt")}>
          <summary className={mark("prompt")}>prompt</summary>
          <pre className="json">{promptText(side.prompt, chatMessages)}</pre>
        </details>
      )}
      <div className={mark("output")}>
        <pre className="json output">{pretty(side.output)}</pre>
      </div>
      <div className="figures-inline">
        <span className={mark("tokens_input") ?? mark("tokens_output")}>
          {side.tokens_input} in / {side.tokens_output} out
        </span>
        {" · "}
        <span className={mark("cost")}>{money(side.cost)}</span>
        {" · "}
        <span>{formatMs(side.latency_ms)}</span>
      </div>
      {side.error && <div className="error">{side.error}</div>}
    </td>
  );
}

function Row({ pair }: { pair: ComparePair }) {
  const label = `${pair.node_id ?? pair.a?.node_name ?? pair.b?.node_name ?? "?"}${pair.occurrence > 1 ? ` #${pair.occurrence}` : ""}`;
  const state = pair.a && pair.b ? (pair.changed.length ? "differs" : "same") : pair.a ? "only in a" : "only in b";
  return (
    <tr className={`diff-row ${state.replace(/ /g, "-")}`} aria-label={`${label}: ${state}`}>
      <th scope="row">
        {label}
        <div className="muted">{state === "differs" ? pair.changed.join(", ") : state}</div>
      </th>
      <Side side={pair.a} changed={pair.changed} label="a" />
      <Side side={pair.b} changed={pair.changed} label="b" />
    </tr>
  );
}

function Picker({ a, b, onPick }: { a: string; b: string; onPick: (a: string, b: string) => void }) {
  const [first, setFirst] = useState(a);
  const [second, setSecond] = useState(b);
  const known = useRunSummary(a || null);
  const runs = useWorkflowRuns(a && known.data?.workflow_id ? known.data.workflow_id : null);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    onPick(first.trim(), second.trim());
  };
  return (
    <form className="diff-picker" onSubmit={submit}>
      <label>
        Run a <input value={first} onChange={(event) => setFirst(event.target.value)} aria-label="Run a" placeholder="a run id" />
      </label>
      <label>
        Run b
        {runs.data && runs.data.length > 1 ? (
          <select aria-label="Run b" value={second} onChange={(event) => setSecond(event.target.value)}>
            <option value="">choose a run of the same workflow</option>
            {runs.data
              .filter((run) => run.id !== first)
              .map((run) => (
                <option key={run.id} value={run.id}>
                  {run.id} ({run.status}, {new Date(run.created_at).toLocaleString()})
                </option>
              ))}
          </select>
        ) : (
          <input value={second} onChange={(event) => setSecond(event.target.value)} aria-label="Run b" placeholder="a run id" />
        )}
      </label>
      <button type="submit">Compare</button>
    </form>
  );
}

export default function RunDiffPage() {
  const [params, setParams] = useSearchParams();
  const a = params.get("a") ?? "";
  const b = params.get("b") ?? "";
  const compare = useRunCompare(a || null, b || null);
  const pick = (first: string, second: string) => setParams({ a: first, b: second });
  return (
    <section className="run-diff">
      <h1>Compare runs</h1>
      <Picker key={`${a}|${b}`} a={a} b={b} onPick={pick} />
      {(!a || !b) && <Empty>Choose two runs (typically of one workflow, before and after a change) to see them side by side.</Empty>}
      {a && b && compare.isPending && <Loading what="both runs" />}
      {compare.error && <ErrorState error={compare.error} retry={() => void compare.refetch()} />}
      {compare.data && (
        <>
          {!compare.data.same_workflow && <p className="warning">These runs belong to different workflows: steps are lined up by node id.</p>}
          <table className="diff-table">
            <thead>
              <tr>
                <th scope="col">step</th>
                <th scope="col">
                  a: <Link to={`/runs/${compare.data.a.id}`}>{compare.data.a.id}</Link> (v{compare.data.a.workflow_version ?? "?"})
                </th>
                <th scope="col">
                  b: <Link to={`/runs/${compare.data.b.id}`}>{compare.data.b.id}</Link> (v{compare.data.b.workflow_version ?? "?"})
                </th>
              </tr>
              <tr className="diff-totals" aria-label="Totals">
                <th scope="row">totals</th>
                {(["a", "b"] as const).map((side) => {
                  const totals = compare.data.totals[side];
                  return (
                    <td key={side}>
                      {totals.status} · {totals.steps} steps · {totals.tokens_input} in / {totals.tokens_output} out · {money(totals.cost)} ·{" "}
                      {formatMs(totals.latency_ms)}
                    </td>
                  );
                })}
              </tr>
              <tr aria-label="Delta">
                <th scope="row">b − a</th>
                <td colSpan={2} data-testid="diff-delta">
                  tokens {signed(compare.data.totals.delta.tokens_input)} in / {signed(compare.data.totals.delta.tokens_output)} out · cost{" "}
                  {compare.data.totals.delta.cost.startsWith("-") ? "" : "+"}
                  {money(compare.data.totals.delta.cost)} · latency{" "}
                  {compare.data.totals.delta.latency_ms === null ? "–" : `${signed(Math.round(compare.data.totals.delta.latency_ms))} ms`}
                </td>
              </tr>
            </thead>
            <tbody>
              {compare.data.steps.map((pair, index) => (
                <Row key={index} pair={pair} />
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}

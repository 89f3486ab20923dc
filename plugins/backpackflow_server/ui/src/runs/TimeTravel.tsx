// Backpack time travel: a slider across the run's commits, the state right after the chosen
// commit, and the diff between any two commits (by default: the one before and the chosen one).
import { useEffect, useState } from "react";
import { ApiError } from "../api/client";
import { Empty, ErrorState, Loading } from "../components/States";
import { type CommitInfo, useCommitDiff, useCommits, useStateAt } from "./api";
import { pretty } from "./logic";

function commitLabel(commit: CommitInfo): string {
  const who = commit.node_id ?? "inputs";
  return `#${commit.seq} ${commit.op} ${commit.key} (${who}${commit.step !== null ? `, step ${commit.step}` : ""})`;
}

interface Props {
  runId: string;
  /** Changes when the run moved on (its commits are read again). */
  refreshKey: unknown;
  onFork?: (commitId: string) => void;
}

export function TimeTravel({ runId, refreshKey, onFork }: Props) {
  const commits = useCommits(runId, refreshKey);
  const items = commits.data ?? [];
  const [index, setIndex] = useState<number | null>(null);
  const [from, setFrom] = useState<string>("");
  const chosen = items.length ? items[Math.min(index ?? items.length - 1, items.length - 1)] : null;
  useEffect(() => setFrom(""), [chosen?.commit_id]);
  const previous = chosen ? items[items.indexOf(chosen) - 1] ?? null : null;
  const fromCommit = from || previous?.commit_id || null;
  const state = useStateAt(runId, chosen?.commit_id ?? null);
  const diff = useCommitDiff(runId, fromCommit, chosen?.commit_id ?? null);

  if (commits.isPending) return <Loading what="the commits" />;
  if (commits.error) {
    if (commits.error instanceof ApiError && commits.error.status === 404) {
      return <Empty>This run has no checkpoint, so it cannot be read at a commit (a parallel flow, or durability off).</Empty>;
    }
    return <ErrorState error={commits.error} retry={() => void commits.refetch()} />;
  }
  if (!chosen) return <Empty>No Backpack commit yet.</Empty>;
  const position = items.indexOf(chosen);
  return (
    <section className="time-travel" aria-label="Time travel">
      <label className="slider">
        Commit {position + 1} of {items.length}
        <input
          type="range"
          min={0}
          max={items.length - 1}
          value={position}
          aria-label="Commit"
          onChange={(event) => setIndex(Number(event.target.value))}
        />
      </label>
      <p data-testid="commit-label">
        <code>{commitLabel(chosen)}</code>
        {chosen.inherited && <span className="chip">inherited</span>}
        {onFork && !chosen.inherited && (
          <button type="button" onClick={() => onFork(chosen.commit_id)}>
            Fork from this commit
          </button>
        )}
      </p>
      <div className="columns">
        <div>
          <h4>State after this commit</h4>
          {state.isPending && <Loading what="the state" />}
          {state.error && <ErrorState error={state.error} />}
          {state.data && (
            <pre className="json" data-testid="state-at-commit">
              {pretty(state.data.state)}
            </pre>
          )}
        </div>
        <div>
          <h4>
            Diff from{" "}
            <select aria-label="Diff from" value={fromCommit ?? ""} onChange={(event) => setFrom(event.target.value)}>
              <option value="">the empty state</option>
              {items.slice(0, position).map((commit) => (
                <option key={commit.commit_id} value={commit.commit_id}>
                  {commitLabel(commit)}
                </option>
              ))}
            </select>
          </h4>
          {diff.isPending && <Loading what="the diff" />}
          {diff.error && <ErrorState error={diff.error} />}
          {diff.data && (
            <div data-testid="commit-diff">
              {Object.entries(diff.data.added).map(([key, value]) => (
                <div key={`a-${key}`} className="diff-added">
                  + {key}: <code>{pretty(value)}</code>
                </div>
              ))}
              {Object.entries(diff.data.removed).map(([key, value]) => (
                <div key={`r-${key}`} className="diff-removed">
                  − {key}: <code>{pretty(value)}</code>
                </div>
              ))}
              {Object.entries(diff.data.modified).map(([key, change]) => (
                <div key={`m-${key}`} className="diff-modified">
                  ~ {key}: <code>{pretty(change.old)}</code> → <code>{pretty(change.new)}</code>
                </div>
              ))}
              {Object.keys(diff.data.added).length + Object.keys(diff.data.removed).length + Object.keys(diff.data.modified).length === 0 && (
                <p className="muted">no change</p>
              )}
            </div>
          )}
        </div>
      </div>
    </section>
  );
}

// One workflow's runs, newest first, each linking to its run view.
import { Link } from "react-router-dom";
import { useRuns } from "../api/hooks";
import { Empty, ErrorState, Loading } from "../components/States";
import { StatusChip } from "../components/StatusChip";

export function RunHistory({ workflowId }: { workflowId: string }) {
  const runs = useRuns(workflowId, 20);
  if (runs.isPending) return <Loading what="the runs" />;
  if (runs.isError) return <ErrorState error={runs.error} retry={() => runs.refetch()} />;
  if (runs.data.length === 0) return <Empty>No run yet: open the workflow and press Run.</Empty>;
  return (
    <table className="runs" aria-label="Run history">
      <thead>
        <tr>
          <th>Run</th>
          <th>Status</th>
          <th>Started</th>
          <th>Tokens</th>
          <th>Cost</th>
        </tr>
      </thead>
      <tbody>
        {runs.data.map((run) => (
          <tr key={run.id}>
            <td>
              <Link to={`/runs/${run.id}`}>{run.id.slice(-8)}</Link>
            </td>
            <td>
              <StatusChip status={run.status} />
            </td>
            <td>{new Date(run.created_at).toLocaleString()}</td>
            <td>{run.total_tokens_input + run.total_tokens_output}</td>
            <td>{run.total_cost}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

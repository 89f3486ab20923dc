import { Link } from "react-router-dom";
import { useWorkflows } from "../api/hooks";
import { Empty, ErrorState, Loading } from "../components/States";

export function WorkflowsPage() {
  const workflows = useWorkflows();
  if (workflows.isPending) return <Loading what="the workflows" />;
  if (workflows.isError) return <ErrorState error={workflows.error} retry={() => workflows.refetch()} />;
  if (workflows.data.length === 0) return <Empty>No workflow yet.</Empty>;
  return (
    <section>
      <h1>Workflows</h1>
      <ul>
        {workflows.data.map((workflow) => (
          <li key={workflow.id}>
            <Link to={`/workflows/${workflow.id}`}>{workflow.name}</Link>
          </li>
        ))}
      </ul>
    </section>
  );
}

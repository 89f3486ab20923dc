import { useParams } from "react-router-dom";
import { useWorkflow } from "../api/hooks";
import { ErrorState, Loading } from "../components/States";

export default function EditorPage() {
  const { id = "" } = useParams();
  const workflow = useWorkflow(id);
  if (workflow.isPending) return <Loading what="the workflow" />;
  if (workflow.isError) return <ErrorState error={workflow.error} retry={() => workflow.refetch()} />;
  return (
    <section>
      <h1>{workflow.data.name}</h1>
      <pre>{JSON.stringify(workflow.data.graph_json, null, 2)}</pre>
    </section>
  );
}

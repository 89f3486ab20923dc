// Placeholder: the run diff is built by the `uirun` helper (issue 18).
import { Link } from "react-router-dom";

export default function RunDiffPage() {
  return (
    <section>
      <h1>Compare runs</h1>
      <p>
        The run diff is not built yet. <Link to="/">Back to the workflows</Link>
      </p>
    </section>
  );
}

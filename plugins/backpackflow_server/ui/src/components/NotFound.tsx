import { Link } from "react-router-dom";

export function NotFound() {
  return (
    <div className="state empty">
      <h1>Page not found</h1>
      <p>
        There is no page at this address. <Link to="/">Go to the workflows</Link>.
      </p>
    </div>
  );
}

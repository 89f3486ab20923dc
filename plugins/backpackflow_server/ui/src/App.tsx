// The app shell: the session gate, the header and the routes. Pages other than the workflow
// list are loaded on demand (React.lazy), so the first page costs only the JavaScript it needs.
import { lazy, Suspense } from "react";
import { Link, NavLink, Route, Routes } from "react-router-dom";
import { SessionGate, useSession } from "./components/SessionGate";
import { Loading } from "./components/States";
import { confirmLeave } from "./components/leaveGuard";
import { NotFound } from "./components/NotFound";
import { WorkflowsPage } from "./workflows/WorkflowsPage";

const EditorPage = lazy(() => import("./editor/EditorPage"));
const RunPage = lazy(() => import("./runs/RunPage"));
const RunDiffPage = lazy(() => import("./diff/RunDiffPage"));

function Header() {
  const { session, signOut } = useSession();
  return (
    <header
      className="app-header"
      onClickCapture={(event) => {
        if ((event.target as HTMLElement).closest("a") && !confirmLeave()) event.preventDefault();
      }}
    >
      <Link to="/" className="brand">
        backpackflow
      </Link>
      <nav aria-label="Main">
        <NavLink to="/" end>
          Workflows
        </NavLink>
        <NavLink to="/runs/diff">Compare runs</NavLink>
        <a href="/docs">API docs</a>
      </nav>
      <span className="who" data-testid="who">
        {session.name} ({session.role})
      </span>
      {session.via === "cookie" && (
        <button type="button" className="link" onClick={signOut}>
          Sign out
        </button>
      )}
    </header>
  );
}

export function App() {
  return (
    <SessionGate>
      <Header />
      <main className="app-main">
        <Suspense fallback={<Loading what="the page" />}>
          <Routes>
            <Route path="/" element={<WorkflowsPage />} />
            <Route path="/workflows/:id" element={<EditorPage />} />
            <Route path="/runs/diff" element={<RunDiffPage />} />
            <Route path="/runs/:id" element={<RunPage />} />
            <Route path="*" element={<NotFound />} />
          </Routes>
        </Suspense>
      </main>
    </SessionGate>
  );
}

import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { BrowserRouter } from "react-router-dom";
import { MutationCache, QueryCache, QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { App } from "./App";
import { ApiError } from "./api/client";
import { keys } from "./api/hooks";
import "./styles.css";

/** A 401 anywhere means the session ended (expired, its token revoked, the service restarted
 * with a new session secret): forget it, so the sign-in form shows instead of errors. */
function signOutOn401(error: unknown): void {
  if (error instanceof ApiError && error.status === 401) queryClient.setQueryData(keys.session, null);
}

const queryClient: QueryClient = new QueryClient({
  queryCache: new QueryCache({ onError: signOutOn401 }),
  mutationCache: new MutationCache({ onError: signOutOn401 }),
  defaultOptions: {
    queries: {
      // a 4xx will not change by asking again; a network blip or a 503 may
      retry: (count, error) => count < 2 && !(error instanceof ApiError && error.status >= 400 && error.status < 500),
      refetchOnWindowFocus: false,
    },
  },
});

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <QueryClientProvider client={queryClient}>
      <BrowserRouter>
        <App />
      </BrowserRouter>
    </QueryClientProvider>
  </StrictMode>,
);

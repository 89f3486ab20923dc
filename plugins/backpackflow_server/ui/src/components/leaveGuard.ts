// A page with unsaved work (the editor) registers a guard; the app's own links ask it before
// leaving, and so does the browser's Back button (guardBackButton). Reloads and closing the tab
// are asked by `beforeunload`. (React Router's useBlocker would cover Back too, but needs its
// data router: 17 KB more initial JavaScript.)
let guard: (() => string | null) | null = null;

/** ``check`` says why leaving loses work, or null; returns the function that removes it. */
export function setLeaveGuard(check: () => string | null): () => void {
  guard = check;
  return () => {
    if (guard === check) guard = null;
  };
}

/** Whether to go on leaving: true unless a guard objects and the user chooses to stay. */
export function confirmLeave(): boolean {
  const reason = guard?.();
  return !reason || window.confirm(`${reason} Leave anyway?`);
}

const SENTINEL = "backpackflowUnsaved";

function onSentinel(): boolean {
  const state: unknown = window.history.state;
  return typeof state === "object" && state !== null && SENTINEL in state;
}

function pushSentinel(): void {
  const state: unknown = window.history.state;
  window.history.pushState({ ...(typeof state === "object" ? state : {}), [SENTINEL]: true }, "", window.location.href);
}

/** While unsaved work is open, Back first lands on a second history entry of the same address
 * (pushed here), so the page can ask: staying pushes that entry again, leaving goes on back.
 * Returns what undoes it (dropping the extra entry when the work was saved meanwhile). */
export function guardBackButton(reason: string): () => void {
  pushSentinel();
  let armed = true;
  const onPop = () => {
    if (!armed || onSentinel()) return;
    if (window.confirm(`${reason} Leave anyway?`)) {
      armed = false;
      window.history.back();
    } else pushSentinel();
  };
  window.addEventListener("popstate", onPop);
  return () => {
    window.removeEventListener("popstate", onPop);
    // saved (still on the extra entry): drop it; left by a link: it is behind us, harmless
    if (armed && onSentinel()) window.history.back();
  };
}

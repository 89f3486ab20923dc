// A page with unsaved work (the editor) registers a guard; the app's own links ask it before
// leaving. (Reloads and closing the tab are asked by `beforeunload`. React Router's useBlocker
// would cover the back button too, but needs its data router: 17 KB more initial JavaScript.)
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

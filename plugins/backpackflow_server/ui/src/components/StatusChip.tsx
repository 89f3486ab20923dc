// A run's or step's status as a coloured chip (shared by the workflow list and the run view).
export function StatusChip({ status }: { status: string }) {
  return <span className={`chip status-${status}`}>{status}</span>;
}

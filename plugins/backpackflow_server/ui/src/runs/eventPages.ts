// A finished run's trace events, paged in as the Events list shows them (GET
// /api/runs/{id}/trace, 1,000 a page), so that opening a run of 50,000 events fetches none
// until the list is looked at, and then only the pages in view. Seqs of a stored run normally
// run 1..last_seq without a gap (then page k is `after=k*1000`, fetched in any order); if
// they do not, pages are fetched one after another from the start.
import type { TraceEvent, TracePage } from "../api/types";

export const PAGE = 1000;

export type FetchPage = (after: number, limit: number) => Promise<TracePage>;

export class EventPages {
  private readonly pages = new Map<number, TraceEvent[]>();
  private readonly loading = new Set<number>();
  /** Sparse seqs: the seq each loaded page ended at (the `after` of the next one). */
  private readonly ends = new Map<number, number>();
  error: unknown = null;

  constructor(
    /** How many events the run stored. */
    readonly count: number,
    private readonly dense: boolean,
    private readonly fetchPage: FetchPage,
    private readonly onLoad: () => void,
  ) {}

  /** The event at ``index`` (in seq order) if its page is in; asks for the page otherwise. */
  get(index: number): TraceEvent | undefined {
    const page = Math.floor(index / PAGE);
    const events = this.pages.get(page);
    if (events) return events[index - page * PAGE];
    this.request(page);
    return undefined;
  }

  private request(page: number): void {
    if (this.loading.has(page) || this.pages.has(page) || this.error !== null) return;
    let after: number;
    if (this.dense) after = page * PAGE;
    else {
      // one after another: the page before must be in to know where this one starts
      const previous = page === 0 ? 0 : this.ends.get(page - 1);
      if (previous === undefined) {
        this.request(page - 1);
        return;
      }
      after = previous;
    }
    this.loading.add(page);
    this.fetchPage(after, PAGE).then(
      (result) => {
        this.loading.delete(page);
        this.pages.set(page, result.items);
        this.ends.set(page, result.next_after);
        this.onLoad();
      },
      (error: unknown) => {
        this.loading.delete(page);
        this.error = error;
        this.onLoad();
      },
    );
  }

  /** Pages in so far (for tests and the list's own bookkeeping). */
  get loaded(): number {
    return this.pages.size;
  }
}

// The timeline's auto-scroll rule: it follows new rows while the user is at the bottom; once
// they scroll up to read, it stays where they are; scrolling back to the bottom follows again.

/** Pixels from the bottom that still count as "at the bottom" (sub-pixel rounding, borders). */
export const BOTTOM_SLACK = 24;

export function atBottom(scrollTop: number, clientHeight: number, scrollHeight: number, slack = BOTTOM_SLACK): boolean {
  return scrollHeight - (scrollTop + clientHeight) <= slack;
}

/**
 * Whether to keep following after a scroll event. A scroll the list made itself (to follow)
 * keeps following; a scroll by the user follows only if it ended at the bottom.
 */
export function followAfterScroll(
  following: boolean,
  programmatic: boolean,
  scrollTop: number,
  clientHeight: number,
  scrollHeight: number,
): boolean {
  if (programmatic) return following;
  return atBottom(scrollTop, clientHeight, scrollHeight);
}

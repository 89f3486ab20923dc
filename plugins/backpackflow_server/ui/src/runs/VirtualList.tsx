// A virtualised list that follows new rows (the auto-scroll rule of ./autoscroll): only the
// rows in view are in the DOM, so 2,000 steps or 50,000 events scroll as smoothly as 20.
import { type ReactNode, useEffect, useLayoutEffect, useRef, useState } from "react";
import { useVirtualizer } from "@tanstack/react-virtual";
import { followAfterScroll } from "./autoscroll";

interface Props {
  count: number;
  rowHeight: number;
  label: string;
  renderRow: (index: number) => ReactNode;
  /** Bumped when rows changed in place (the list re-renders the visible ones). */
  version?: number;
  className?: string;
  testId?: string;
}

export function VirtualList({ count, rowHeight, label, renderRow, version, className, testId }: Props) {
  const parent = useRef<HTMLDivElement>(null);
  const [following, setFollowing] = useState(true);
  const programmatic = useRef(false);
  const virtualizer = useVirtualizer({
    count,
    getScrollElement: () => parent.current,
    estimateSize: () => rowHeight,
    overscan: 12,
  });

  useLayoutEffect(() => {
    if (following && count > 0) {
      programmatic.current = true;
      virtualizer.scrollToIndex(count - 1, { align: "end" });
    }
  }, [count, following, version, virtualizer]);

  useEffect(() => {
    const element = parent.current;
    if (!element) return undefined;
    const onScroll = () => {
      const wasProgrammatic = programmatic.current;
      programmatic.current = false;
      setFollowing((current) =>
        followAfterScroll(current, wasProgrammatic, element.scrollTop, element.clientHeight, element.scrollHeight),
      );
    };
    // a wheel, touch or key is the user's: the next scroll event is theirs
    const byUser = () => {
      programmatic.current = false;
    };
    element.addEventListener("scroll", onScroll, { passive: true });
    element.addEventListener("wheel", byUser, { passive: true });
    element.addEventListener("touchstart", byUser, { passive: true });
    element.addEventListener("keydown", byUser);
    return () => {
      element.removeEventListener("scroll", onScroll);
      element.removeEventListener("wheel", byUser);
      element.removeEventListener("touchstart", byUser);
      element.removeEventListener("keydown", byUser);
    };
  }, []);

  return (
    <div
      ref={parent}
      className={`virtual-list ${className ?? ""}`}
      role="list"
      aria-label={label}
      data-following={following ? "true" : "false"}
      data-testid={testId}
      tabIndex={0}
    >
      <div style={{ height: virtualizer.getTotalSize(), position: "relative", width: "100%" }}>
        {virtualizer.getVirtualItems().map((item) => (
          <div
            key={item.key}
            role="listitem"
            className="virtual-row"
            style={{ position: "absolute", top: 0, left: 0, width: "100%", height: item.size, transform: `translateY(${item.start}px)` }}
          >
            {renderRow(item.index)}
          </div>
        ))}
      </div>
      {!following && count > 0 && (
        <button
          type="button"
          className="follow"
          onClick={() => {
            setFollowing(true);
          }}
        >
          Follow new rows
        </button>
      )}
    </div>
  );
}

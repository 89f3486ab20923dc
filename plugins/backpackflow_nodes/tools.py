"""Built-in tools for ``tool`` nodes: ``http_fetch``, ``read_file``, ``csv_summary``.

A tool is ``function(arguments, context)`` (sync or async) where ``arguments`` is an instance of
the tool's params class (validated like node params) and ``context`` a :class:`ToolContext`.
Tools that touch the outside go through the run's sandbox policy (see
:mod:`backpackflow.policy.sandbox`), which the context carries:

* ``http_fetch`` reaches only hosts listed in the node's ``allowed_hosts`` **and** allowed by
  the policy's egress rules (checked after DNS resolution, connecting to the address checked),
  with a timeout and a size cap, and follows no redirects;
* the file tools read through :meth:`ToolContext.read_bytes`: below the flow's folder (or
  ``base_dir``), and below the operator's files root when there is one, symbolic links resolved
  first. A third-party tool that reads files should do the same.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import attrs
import msgspec

from backpackflow import BackpackFlowError
from backpackflow.policy import (
    TRUSTED,
    EgressDenied,
    SandboxPolicy,
    SandboxViolation,
    host_matches,
)


class ToolError(BackpackFlowError):
    """A tool refused or failed; the message names the tool and what to change."""


@attrs.frozen
class ToolContext:
    """What a tool may know of the run: the folder its relative paths start from and the
    run's sandbox policy (what it may read and reach)."""

    base_dir: Path
    policy: SandboxPolicy = TRUSTED

    def read_bytes(self, path: str, *, max_bytes: int, tool: str) -> bytes:
        """The bytes of the file ``path`` (relative to ``base_dir``), refused when it leaves
        what the policy lets flows read (:class:`ToolError` naming the tool)."""
        try:
            return self.policy.read_file(path, self.base_dir, max_bytes=max_bytes, what=tool)
        except SandboxViolation as exc:
            raise ToolError(str(exc)) from None


# ------------------------------------------------------------------------------- http_fetch


@attrs.frozen(kw_only=True)
class HttpFetchArgs:
    url: Annotated[str, msgspec.Meta(min_length=1, description="http(s) URL to GET")]
    allowed_hosts: Annotated[
        list[str],
        msgspec.Meta(description="hosts the URL may name (exact, or '*.example.com')"),
    ] = attrs.field(factory=list)
    timeout: Annotated[float, msgspec.Meta(gt=0, le=120)] = 10.0
    max_bytes: Annotated[int, msgspec.Meta(ge=1)] = 1_000_000
    headers: dict[str, str] = attrs.field(factory=dict)


async def http_fetch(args: HttpFetchArgs, context: ToolContext) -> dict[str, Any]:
    """GET a URL on an allowed host; returns status, content type and text."""
    import httpx

    from backpackflow_httpx import async_client
    from backpackflow_otel.propagation import trace_headers

    parts = urlsplit(args.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolError(f"http_fetch: {args.url!r} is not an http(s) URL")
    if not host_matches(parts.hostname, args.allowed_hosts):
        raise ToolError(
            f"http_fetch: host {parts.hostname!r} is not in allowed_hosts "
            f"{args.allowed_hosts}; add it to the node's arguments to allow it"
        )
    try:
        async with (
            async_client(
                context.policy.egress, timeout=args.timeout, follow_redirects=False
            ) as client,
            client.stream("GET", args.url, headers=trace_headers(args.headers)) as response,
        ):
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) > args.max_bytes:
                    raise ToolError(
                        f"http_fetch: {args.url} is larger than max_bytes={args.max_bytes}"
                    )
            text = body.decode(response.encoding or "utf-8", errors="replace")
            return {
                "url": args.url,
                "status": response.status_code,
                "content_type": response.headers.get("content-type"),
                "content": text,
                "bytes": len(body),
            }
    except EgressDenied as exc:
        raise ToolError(f"http_fetch: {exc}") from None
    except httpx.TimeoutException:
        raise ToolError(f"http_fetch: {args.url} timed out after {args.timeout}s") from None
    except httpx.HTTPError as exc:
        raise ToolError(f"http_fetch: {args.url}: {type(exc).__name__}: {exc}") from None


# ------------------------------------------------------------------------------- files


@attrs.frozen(kw_only=True)
class ReadFileArgs:
    path: Annotated[str, msgspec.Meta(min_length=1, description="relative to the flow's folder")]
    max_bytes: Annotated[int, msgspec.Meta(ge=1)] = 1_000_000
    encoding: str = "utf-8"


def read_file(args: ReadFileArgs, context: ToolContext) -> dict[str, Any]:
    """Read a text file below the flow's folder."""
    data = context.read_bytes(args.path, max_bytes=args.max_bytes, tool="read_file")
    try:
        content = data.decode(args.encoding)
    except LookupError:
        raise ToolError(f"read_file: unknown encoding {args.encoding!r}") from None
    except UnicodeDecodeError as exc:
        raise ToolError(f"read_file: {args.path!r} is not {args.encoding} text: {exc}") from None
    return {"path": args.path, "content": content, "bytes": len(data)}


@attrs.frozen(kw_only=True)
class CsvSummaryArgs:
    path: Annotated[str, msgspec.Meta(min_length=1, description="relative to the flow's folder")]
    delimiter: Annotated[str, msgspec.Meta(min_length=1, max_length=1)] = ","
    sample_rows: Annotated[int, msgspec.Meta(ge=0, le=100)] = 3
    top_values: Annotated[int, msgspec.Meta(ge=1, le=50)] = 3
    max_bytes: Annotated[int, msgspec.Meta(ge=1)] = 10_000_000


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", "")) if text.strip() else None
    except ValueError:
        return None


def csv_summary(args: CsvSummaryArgs, context: ToolContext) -> dict[str, Any]:
    """Rows, columns and per-column statistics of a CSV file below the flow's folder: numeric
    columns get min/max/mean/sum, text columns their most frequent values."""
    data = context.read_bytes(args.path, max_bytes=args.max_bytes, tool="csv_summary")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ToolError(f"csv_summary: {args.path!r} is not UTF-8 text: {exc}") from None
    reader = csv.DictReader(io.StringIO(text), delimiter=args.delimiter)
    if not reader.fieldnames:
        raise ToolError(f"csv_summary: {args.path!r} has no header row")
    rows = list(reader)
    columns = []
    for name in reader.fieldnames:
        values = [row.get(name) or "" for row in rows]
        present = [v for v in values if v.strip()]
        numbers = [n for n in (_number(v) for v in present) if n is not None]
        column: dict[str, Any] = {"name": name, "non_empty": len(present)}
        if present and len(numbers) == len(present):
            whole = all(n.is_integer() for n in numbers)
            exact: Callable[[float], float | int] = int if whole else float
            column.update(
                type="number",
                min=exact(min(numbers)),
                max=exact(max(numbers)),
                mean=round(statistics.fmean(numbers), 4),
                sum=exact(round(sum(numbers), 4)),
            )
        else:
            column.update(
                type="text",
                distinct=len(set(present)),
                top=[
                    {"value": value, "count": count}
                    for value, count in Counter(present).most_common(args.top_values)
                ],
            )
        columns.append(column)
    return {
        "path": args.path,
        "rows": len(rows),
        "columns": columns,
        "sample": rows[: args.sample_rows],
    }


BUILTIN_TOOLS: dict[str, tuple[Callable[..., Any], type]] = {
    "http_fetch": (http_fetch, HttpFetchArgs),
    "read_file": (read_file, ReadFileArgs),
    "csv_summary": (csv_summary, CsvSummaryArgs),
}

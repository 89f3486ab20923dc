"""Built-in tools for ``tool`` nodes: ``http_fetch``, ``read_file``, ``csv_summary``.

A tool is ``function(arguments, context)`` (sync or async) where ``arguments`` is an instance of
the tool's params class (validated like node params) and ``context`` a :class:`ToolContext`.
Tools that touch the outside are fenced: ``http_fetch`` only reaches hosts listed in the flow's
``allowed_hosts`` and has a timeout and a size cap; the file tools only read below the flow's
directory (or ``base_dir``) and refuse paths that leave it.
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

from backpackflow.errors import BackpackFlowError


class ToolError(BackpackFlowError):
    """A tool refused or failed; the message names the tool and what to change."""


@attrs.frozen
class ToolContext:
    """What a tool may know of the run: the directory relative paths resolve against."""

    base_dir: Path


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


def _host_allowed(host: str, allowed: list[str]) -> bool:
    host = host.lower()
    for pattern in allowed:
        pattern = pattern.lower()
        if pattern.startswith("*.") and (host.endswith(pattern[1:]) or host == pattern[2:]):
            return True
        if host == pattern:
            return True
    return False


async def http_fetch(args: HttpFetchArgs, context: ToolContext) -> dict[str, Any]:
    """GET a URL on an allowed host; returns status, content type and text."""
    import httpx

    parts = urlsplit(args.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolError(f"http_fetch: {args.url!r} is not an http(s) URL")
    if not _host_allowed(parts.hostname, args.allowed_hosts):
        raise ToolError(
            f"http_fetch: host {parts.hostname!r} is not in allowed_hosts "
            f"{args.allowed_hosts}; add it to the node's arguments to allow it"
        )
    try:
        async with (
            httpx.AsyncClient(timeout=args.timeout, follow_redirects=False) as client,
            client.stream("GET", args.url, headers=args.headers) as response,
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


def _resolve(path: str, context: ToolContext, tool: str) -> Path:
    base = context.base_dir.resolve()
    target = (base / path).resolve()
    if not target.is_relative_to(base):
        raise ToolError(f"{tool}: {path!r} is outside the flow's folder {str(base)!r}")
    if not target.is_file():
        raise ToolError(f"{tool}: no file {path!r} in {str(base)!r}")
    return target


def read_file(args: ReadFileArgs, context: ToolContext) -> dict[str, Any]:
    """Read a text file below the flow's folder."""
    target = _resolve(args.path, context, "read_file")
    size = target.stat().st_size
    if size > args.max_bytes:
        raise ToolError(
            f"read_file: {args.path!r} is {size} bytes, over max_bytes={args.max_bytes}"
        )
    try:
        content = target.read_text(encoding=args.encoding)
    except UnicodeDecodeError as exc:
        raise ToolError(f"read_file: {args.path!r} is not {args.encoding} text: {exc}") from None
    return {"path": args.path, "content": content, "bytes": size}


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
    target = _resolve(args.path, context, "csv_summary")
    if target.stat().st_size > args.max_bytes:
        raise ToolError(f"csv_summary: {args.path!r} is over max_bytes={args.max_bytes}")
    text = target.read_text(encoding="utf-8-sig")
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

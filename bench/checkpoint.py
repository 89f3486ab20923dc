"""Checkpoint cost side by side with LangGraph: time per step and bytes stored for a long chat.

The flow is the same chat for both: one node loops, each turn appends one message (~130
bytes of JSON) to ``messages`` and counts the turn, until ``--turns`` (500). Ours is a
:class:`~backpackflow.Node` that ``append``s to the Backpack; LangGraph's is a ``StateGraph``
node whose ``messages`` channel has the ``operator.add`` reducer (how a LangGraph chat keeps
its history), with a conditional edge back to itself.

1. Time per step (one node execution), median of ``--repeats`` interleaved rounds (every
   candidate runs once per round, so a slow patch of the shared machine hits them alike),
   with the range in brackets. Ours: no checkpointer, memory, file (with and without fsync),
   the SQL run store on SQLite and PostgreSQL, in each durability mode. LangGraph: no
   checkpointer, ``InMemorySaver``, ``SqliteSaver`` and ``PostgresSaver`` in each of its
   durability modes (``exit``; ``async``, its default: the step's checkpoint is written while
   the next step runs; ``sync``: written before the next step starts, as our ``node``).
2. Bytes stored after 100, 200, 300, 400 and 500 turns (a run of that length each): the
   payload each checkpointer wrote for the run (ours: its records' JSON text; LangGraph's
   SQLite saver: its ``checkpoints`` and ``writes`` blobs; its PostgreSQL saver: the
   ``checkpoints`` JSONB as text plus the ``checkpoint_blobs`` and ``checkpoint_writes``
   blobs). Keys and indexes are not counted for either. Ours store deltas and grow
   linearly (x5 from 100 to 500 turns); a saver that stores the whole state per step grows
   quadratically (x25). The row "full state per step (computed)" is that sum computed from
   our own run: the JSON size of the state after each step.

PostgreSQL (``--postgres URL``): the bench makes a schema of its own in that database
(``bench_checkpoint_<pid>``) for our store and LangGraph's tables, and drops it at the end.
A peer that is not installed is named and skipped (Setup below).

Setup: pip install -r bench/requirements-peers.txt   (peers are benchmark-only dependencies)
Run:   python bench/checkpoint.py [--turns 500] [--repeats 5] [--postgres URL]
Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Any, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backpackflow import Backpack, Checkpointer, FileCheckpointer, Flow, MemoryCheckpointer, Node
from peers import installed

SIZE_TURNS = (100, 200, 300, 400, 500)

# never time network tracing (see bench/peers.py)
os.environ["LANGSMITH_TRACING"] = "false"
os.environ["LANGCHAIN_TRACING_V2"] = "false"


def message(turn: int) -> dict[str, str]:
    """The message a turn appends: the same ~130 bytes of JSON for ours and LangGraph's."""
    return {"role": "user", "content": f"turn {turn}: " + "lorem ipsum dolor sit amet " * 4}


# --- ours ---------------------------------------------------------------------------------


class Chat(Node):
    """One chat turn: count the turn, append the user's message, loop until ``turns``."""

    def __init__(self, turns: int) -> None:
        super().__init__(id="chat")
        self.turns = turns

    def post(self, backpack: Any, prep_res: Any, exec_res: Any) -> str:
        turn = backpack.unpack("turn", 0) + 1
        backpack.pack("turn", turn)
        backpack.append("messages", [message(turn)])
        return "again" if turn < self.turns else "done"


def chat_flow(turns: int) -> Flow:
    node = Chat(turns)
    node - "again" >> node
    node - "done" >> None  # type: ignore[operator]
    return Flow(node, max_steps=turns + 10)


def ours(checkpointer: Checkpointer | None, durability: str) -> Callable[[int, str], None]:
    """A run of our chat of ``turns`` turns as run ``run_id``, checked."""
    flows: dict[int, Flow] = {}

    def run(turns: int, run_id: str) -> None:
        flow = flows.get(turns) or flows.setdefault(turns, chat_flow(turns))
        options: dict[str, Any] = {}
        if checkpointer is not None:
            options = {"checkpointer": checkpointer, "durability": durability, "run_id": run_id}
        result = flow.execute_sync(Backpack(), **options)
        assert result.ok, result.error
        assert result.backpack.peek("turn") == turns

    return run


def full_state_bytes(turns: int) -> int:
    """What a checkpointer storing the whole state after every step would store: the sum of
    the state's JSON size after each step of our chat."""
    result = chat_flow(turns).execute_sync(Backpack())
    backpack, total = result.backpack, 0
    for commit in backpack.get_history():
        if commit.key == "messages":  # a step ends with its message
            state = backpack.get_snapshot_at_commit(commit.commit_id).to_dict()
            total += len(json.dumps(state, separators=(",", ":")))
    return total


# --- LangGraph ----------------------------------------------------------------------------


class ChatState(TypedDict):
    """LangGraph's chat state: a counter and a message list with the append reducer."""

    turn: int
    messages: Annotated[list[dict[str, str]], operator.add]


def langgraph(saver: Any, durability: str) -> Callable[[int, str], None]:
    """A run of LangGraph's chat of ``turns`` turns as thread ``run_id``, checked."""
    from langgraph.graph import END, START, StateGraph

    graphs: dict[int, Any] = {}

    def build(turns: int) -> Any:
        def chat(state: ChatState) -> dict[str, Any]:
            turn = state["turn"] + 1
            return {"turn": turn, "messages": [message(turn)]}

        builder = StateGraph(ChatState)
        builder.add_node("chat", chat)
        builder.add_edge(START, "chat")
        builder.add_conditional_edges(
            "chat", lambda state: "chat" if state["turn"] < turns else END, ["chat", END]
        )
        return builder.compile(checkpointer=saver)

    def run(turns: int, run_id: str) -> None:
        graph = graphs.get(turns) or graphs.setdefault(turns, build(turns))
        config = {"configurable": {"thread_id": run_id}, "recursion_limit": turns + 10}
        options = {"durability": durability} if saver is not None else {}
        state = graph.invoke({"turn": 0, "messages": []}, config, **options)
        assert state["turn"] == turns and len(state["messages"]) == turns

    return run


def langgraph_sqlite_size(connection: sqlite3.Connection) -> Callable[[str], int]:
    def size(thread_id: str) -> int:
        (checkpoints,) = connection.execute(
            "SELECT coalesce(sum(length(checkpoint) + length(metadata)), 0) FROM checkpoints"
            " WHERE thread_id = ?",
            (thread_id,),
        ).fetchone()
        (writes,) = connection.execute(
            "SELECT coalesce(sum(length(value)), 0) FROM writes WHERE thread_id = ?",
            (thread_id,),
        ).fetchone()
        return int(checkpoints + writes)

    return size


def langgraph_postgres_size(connection: Any) -> Callable[[str], int]:
    def size(thread_id: str) -> int:
        row = connection.execute(
            """SELECT
                 (SELECT coalesce(sum(octet_length(checkpoint::text)
                                      + octet_length(metadata::text)), 0)
                    FROM checkpoints WHERE thread_id = %(t)s)
               + (SELECT coalesce(sum(octet_length(blob)), 0)
                    FROM checkpoint_blobs WHERE thread_id = %(t)s)
               + (SELECT coalesce(sum(octet_length(blob)), 0)
                    FROM checkpoint_writes WHERE thread_id = %(t)s) AS total""",
            {"t": thread_id},
        ).fetchone()
        return int(row["total"])

    return size


# --- the candidates -----------------------------------------------------------------------


class Candidate:
    """One row: how to run the chat, and (for the bytes table) how to size a stored run."""

    def __init__(
        self,
        label: str,
        run: Callable[[int, str], None],
        size: Callable[[str], int] | None = None,
    ) -> None:
        self.label, self.run, self.size = label, run, size
        self.times: list[float] = []


def libpq_url(url: str) -> str:
    """``url`` as psycopg takes it (SQLAlchemy's ``postgresql+psycopg://`` names a driver)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme.split('+')[0]}://{rest}"


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A fresh schema in ``url``'s database for this bench's tables, dropped at the end."""
    import psycopg

    schema = f"bench_checkpoint_{os.getpid()}"
    with psycopg.connect(libpq_url(url), autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield schema
        finally:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def candidates(stack: ExitStack, folder: Path, postgres: str | None) -> list[Candidate]:
    """Every candidate that can run here; prints which peers or stores are missing."""
    schema = stack.enter_context(postgres_schema(postgres)) if postgres else None
    out = [Candidate("ours: no checkpointer", ours(None, "node"))]
    memory = MemoryCheckpointer()
    file = FileCheckpointer(folder / "files")
    synced = FileCheckpointer(folder / "synced", fsync=True)
    stores: list[tuple[str, Checkpointer, Callable[[str], int] | None, tuple[str, ...]]] = [
        ("memory", memory, None, ("exit", "node", "commit")),
        ("file", file, file.size, ("exit", "node", "commit")),
        ("file+fsync", synced, None, ("node",)),  # one disk flush per commit is 500 x 6 ms
    ]
    try:
        from backpackflow_store_sql import SqlRunStore
    except ImportError:
        print("our SQL store: not installed (pip install 'backpackflow[server]'): skipped")
    else:
        sqlite = SqlRunStore(f"sqlite:///{folder / 'store.db'}")
        sqlite.upgrade()
        stack.callback(sqlite.close)
        stores.append(("sqlite", sqlite, sqlite.checkpoint_size, ("exit", "node", "commit")))
        if postgres:
            store = SqlRunStore(
                postgres,
                engine_options={"connect_args": {"options": f"-c search_path={schema}"}},
            )
            store.upgrade()
            stack.callback(store.close)
            stores.append(("postgres", store, store.checkpoint_size, ("exit", "node", "commit")))
    for name, checkpointer, size, modes in stores:
        for mode in modes:
            out.append(Candidate(f"ours: {name} / {mode}", ours(checkpointer, mode), size))

    version = installed(("langgraph.graph",), ("langgraph",))
    if version is None:
        print("langgraph: not installed (pip install -r bench/requirements-peers.txt): skipped")
        return out
    print(f"langgraph {version}")
    from langgraph.checkpoint.memory import InMemorySaver

    out.append(Candidate("langgraph: no checkpointer", langgraph(None, "sync")))
    savers: list[tuple[str, Any, Callable[[str], int] | None]] = [("memory", InMemorySaver(), None)]
    sqlite_version = installed(("langgraph.checkpoint.sqlite",), ("langgraph-checkpoint-sqlite",))
    if sqlite_version is None:
        print("langgraph-checkpoint-sqlite: not installed: skipped")
    else:
        from langgraph.checkpoint.sqlite import SqliteSaver

        print(f"langgraph-checkpoint-sqlite {sqlite_version}")
        connection = sqlite3.connect(folder / "langgraph.db", check_same_thread=False)
        stack.callback(connection.close)
        saver = SqliteSaver(connection)
        saver.setup()
        savers.append(("sqlite", saver, langgraph_sqlite_size(connection)))
    if postgres:
        pg_version = installed(
            ("langgraph.checkpoint.postgres", "psycopg"), ("langgraph-checkpoint-postgres",)
        )
        if pg_version is None:
            print("langgraph-checkpoint-postgres: not installed: skipped")
        else:
            import psycopg
            from langgraph.checkpoint.postgres import PostgresSaver
            from psycopg.rows import dict_row

            print(f"langgraph-checkpoint-postgres {pg_version}")
            pg = psycopg.connect(
                libpq_url(postgres),
                autocommit=True,
                prepare_threshold=0,
                row_factory=dict_row,
                options=f"-c search_path={schema}",
            )
            stack.callback(pg.close)
            saver = PostgresSaver(pg)
            saver.setup()
            savers.append(("postgres", saver, langgraph_postgres_size(pg)))
    for name, saver, size in savers:
        for mode in ("exit", "async", "sync"):
            out.append(Candidate(f"langgraph: {name} / {mode}", langgraph(saver, mode), size))
    return out


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):9.1f}  [{min(values):.1f}-{max(values):.1f}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--postgres", metavar="URL", help="also measure both on PostgreSQL")
    args = parser.parse_args(argv)
    turns = args.turns
    folder = Path(tempfile.mkdtemp(prefix="bench-checkpoints-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, folder, ignore_errors=True)
        rows = candidates(stack, folder, args.postgres)
        for row in rows:  # warm-up: imports, table creation, the interpreter's caches
            row.run(10, f"warm-{time.time_ns()}")
        for round_ in range(args.repeats):
            for row in rows:
                started = time.perf_counter()
                row.run(turns, f"time-{round_}-{time.time_ns()}")
                row.times.append((time.perf_counter() - started) / turns * 1e6)
        print(
            f"\n{turns}-turn chat; microseconds per step (one node), median "
            f"[min-max] of {args.repeats} interleaved rounds"
        )
        base: dict[str, float] = {}
        for row in rows:
            family = row.label.split(":")[0]
            median = statistics.median(row.times)
            extra = ""
            if family not in base:
                base[family] = median
            else:
                extra = f"  ({median - base[family]:+.1f})"
            print(f"  {row.label:<30} {spread(row.times)} us/step{extra}")

        sized = [r for r in rows if r.size is not None and r.label.endswith(("/ node", "/ async"))]
        lengths = [n for n in SIZE_TURNS if n <= turns] or [turns]
        print("\nbytes stored for one run of N turns (payload; ours: node mode, LangGraph: async)")
        header = "".join(f"{n:>13,}" for n in lengths)
        print(f"  {'turns':<36}{header}   {lengths[-1]} vs {lengths[0]}")
        table = [(row.label, [_sized_run(row, n) for n in lengths]) for row in sized]
        table.append(("full state per step (computed)", [full_state_bytes(n) for n in lengths]))
        for label, sizes in table:
            cells = "".join(f"{size:>13,}" for size in sizes)
            print(f"  {label:<36}{cells}   x{sizes[-1] / sizes[0]:.1f}")


def _sized_run(row: Candidate, turns: int) -> int:
    """Bytes ``row`` stores for a new run of ``turns`` turns."""
    run_id = f"size-{turns}-{time.time_ns()}"
    row.run(turns, run_id)
    assert row.size is not None
    return row.size(run_id)


if __name__ == "__main__":
    main()

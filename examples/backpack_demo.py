"""A tour of the Backpack: versioned state, time travel, forks and per-node permissions.

Run: python examples/backpack_demo.py (installed: python -m backpackflow_examples.backpack_demo)
"""

from __future__ import annotations

from backpackflow import AccessDenied, Backpack


def main() -> None:
    bp = Backpack()
    bp.pack("question", "Which city hosts the 2026 summit?", node_id="input")

    researcher = bp.view(node_id="research", node_name="Researcher", namespace="team.research")
    researcher.append("notes", ["The summit moved from Oslo to Lisbon in March."])
    researcher.append("notes", ["Lisbon confirmed the venue in June."])

    writer = bp.view(node_id="write", node_name="Writer", namespace="team.writing")
    bp.register_permissions("write", read=["question", "notes"], write=["answer"])
    notes = writer.unpack("notes")
    writer.pack("answer", f"Lisbon ({len(notes)} notes used)")
    try:
        writer.pack("question", "tampered")
    except AccessDenied as exc:
        print(f"denied as expected: {exc}")

    print("\nhistory:")
    for commit in bp.get_history():
        who = commit.node_id or "-"
        print(f"  #{commit.seq} {commit.op:<6} {commit.key:<9} v{commit.version} by {who}")

    before = bp.get_snapshot_before_node("write")
    print("\nstate before the writer ran:", before.to_dict())
    print("what the writer changed:", Backpack.diff(before, bp).to_json())
    print("writer read", writer.reads, "and wrote", writer.writes)

    fork = bp.replay_from_commit(bp.get_history()[1].commit_id)
    fork.append("notes", ["(fork) Porto was considered too."])
    print("\nfork from commit #2:", fork.to_dict())
    print("original is untouched:", bp.unpack("notes"))

    restored = Backpack.from_json(bp.to_json_str())
    print("\nserialized and restored exactly:", restored.to_json() == bp.to_json())
    print("namespaces:", bp.get_namespaces())


if __name__ == "__main__":
    main()

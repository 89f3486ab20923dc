import pytest

from backpackflow import (
    AccessDenied,
    Backpack,
    InvalidNamespace,
    KeyNotFound,
    Permissions,
    ReadDenied,
)


def make():
    bp = Backpack()
    bp.pack("public", "p", namespace="shared")
    bp.pack("sales.lead", {"name": "Ada"}, namespace="sales.crm")
    bp.pack("support.ticket", 17, namespace="support.desk")
    bp.pack("secret.key", "hunter2", namespace="sales.vault")
    return bp


def test_unregistered_nodes_are_unrestricted():
    bp = make()
    assert bp.unpack("secret.key", node_id="anyone") == "hunter2"
    bp.pack("new", 1, node_id="anyone")


def test_key_read_permissions():
    bp = make()
    bp.register_permissions("n", read=["public", "sales.*"])
    assert bp.unpack("public", node_id="n") == "p"
    assert bp.unpack("sales.lead", node_id="n") == {"name": "Ada"}
    with pytest.raises(AccessDenied) as info:
        bp.unpack("support.ticket", node_id="n")
    err = info.value
    assert (err.node_id, err.key, err.op) == ("n", "support.ticket", "unpack")
    assert "node 'n' may not read key 'support.ticket'" in str(err)
    assert "matches no read pattern ['public', 'sales.*']" in str(err)


def test_namespace_read_permissions_with_wildcards():
    bp = make()
    bp.register_permissions("n", namespace_read=["sales.*"])
    assert bp.unpack("sales.lead", node_id="n") == {"name": "Ada"}
    assert bp.unpack("secret.key", node_id="n") == "hunter2"
    with pytest.raises(AccessDenied, match="matches no namespace_read pattern"):
        bp.unpack("support.ticket", node_id="n")


def test_deep_wildcards():
    bp = Backpack()
    bp.pack("deep", 1, namespace="org.sales.eu.crm")
    bp.register_permissions("n", namespace_read=["org.**"])
    assert bp.unpack("deep", node_id="n") == 1
    bp.register_permissions("m", namespace_read=["org.*"])
    with pytest.raises(AccessDenied):
        bp.unpack("deep", node_id="m")


def test_deny_wins_over_grants():
    bp = make()
    bp.register_permissions("n", read=["**"], namespace_read=["**"], deny=["secret.*"])
    assert bp.unpack("sales.lead", node_id="n")
    with pytest.raises(AccessDenied, match=r"deny pattern 'secret\.\*' matches key 'secret\.key'"):
        bp.unpack("secret.key", node_id="n")


def test_namespace_deny_wins():
    bp = make()
    bp.register_permissions("n", namespace_read=["sales.**"], namespace_deny=["sales.vault"])
    assert bp.unpack("sales.lead", node_id="n")
    with pytest.raises(AccessDenied, match=r"namespace_deny pattern 'sales\.vault'"):
        bp.unpack("secret.key", node_id="n")


def test_write_permissions_cover_new_keys_overwrites_appends_and_deletes():
    bp = make()
    bp.register_permissions("n", write=["draft.*"])
    bp.pack("draft.one", 1, node_id="n")
    bp.append("draft.log", ["x"], node_id="n")
    bp.delete("draft.one", node_id="n")
    for attempt in (
        lambda: bp.pack("brand-new", 1, node_id="n"),
        lambda: bp.pack("public", "overwritten", node_id="n"),
        lambda: bp.append("sales.lead.log", [1], node_id="n"),
        lambda: bp.delete("public", node_id="n"),
    ):
        with pytest.raises(AccessDenied):
            attempt()
    assert bp.unpack("public") == "p"
    assert not bp.has("brand-new")


def test_namespace_write_checks_existing_item_namespace_too():
    bp = make()
    bp.register_permissions("n", namespace_write=["sales.*"])
    bp.pack("mine", 1, node_id="n", namespace="sales.notes")
    bp.pack("sales.lead", {"name": "Bob"}, node_id="n", namespace="sales.crm")
    with pytest.raises(AccessDenied, match=r"namespace 'sales\.notes', 'support\.desk'"):
        bp.pack("support.ticket", 0, node_id="n", namespace="sales.notes")
    with pytest.raises(AccessDenied):
        bp.delete("support.ticket", node_id="n", namespace="sales.notes")
    with pytest.raises(AccessDenied):
        bp.pack("unscoped", 1, node_id="n")
    assert bp.unpack("support.ticket") == 17


def test_reads_unrestricted_when_only_write_rules_given():
    bp = make()
    bp.register_permissions("n", write=["x"])
    assert bp.unpack("secret.key", node_id="n") == "hunter2"


def test_empty_grant_list_means_nothing_allowed():
    bp = make()
    bp.register_permissions("n", read=[])
    with pytest.raises(AccessDenied):
        bp.unpack("public", node_id="n")


def test_graceful_mode_returns_nothing_and_records_denials():
    bp = make()
    bp.strict = False
    bp.register_permissions("n", read=["public"], write=["out"])
    assert bp.unpack("secret.key", node_id="n") is None
    assert bp.unpack("secret.key", "dflt", node_id="n") == "dflt"
    assert bp.pack("public", "changed", node_id="n") is None
    assert bp.delete("public", node_id="n") is None
    assert bp.append("public-log", [1], node_id="n") is None
    assert bp.unpack("public") == "p"
    assert not bp.has("public-log")
    denials = bp.get_access_denials(node_id="n")
    assert [(d.op, d.key, d.granted) for d in denials] == [
        ("unpack", "secret.key", False),
        ("unpack", "secret.key", False),
        ("pack", "public", False),
        ("delete", "public", False),
        ("append", "public-log", False),
    ]
    assert "matches no read pattern" in denials[0].reason


def test_strict_mode_records_denials_too():
    bp = make()
    bp.register_permissions("n", read=[])
    with pytest.raises(AccessDenied):
        bp.unpack("public", node_id="n")
    assert len(bp.get_access_denials()) == 1


def test_denials_reach_observers():
    bp = make()
    bp.strict = False
    seen = []
    bp.add_observer(seen.append)
    bp.register_permissions("n", read=[])
    bp.unpack("public", node_id="n")
    assert seen[-1].granted is False and seen[-1].reason


def test_denied_reads_of_missing_keys_say_so():
    bp = Backpack(strict=False)
    bp.register_permissions("n", read=[])
    bp.unpack("absent", node_id="n")
    assert bp.get_access_denials()[0].found is False


def test_get_items_by_namespace_respects_permissions():
    bp = make()
    bp.register_permissions("n", deny=["secret.*"])
    keys = [i.key for i in bp.get_items_by_namespace("sales.*", node_id="n")]
    assert keys == ["sales.lead"]


def test_permissions_validate_patterns():
    bp = Backpack()
    with pytest.raises(InvalidNamespace):
        bp.register_permissions("n", read=["a..b"])


def test_permissions_accessors():
    bp = Backpack()
    perms = bp.register_permissions("n", read="single")
    assert perms == Permissions(read=("single",))
    assert bp.get_permissions("n") is perms
    bp.clear_permissions("n")
    assert bp.get_permissions("n") is None


def test_permission_json_round_trip():
    perms = Permissions(read=["a"], namespace_write=["b.*"], deny=["c"])
    assert Permissions.from_json(perms.to_json()) == perms


def test_a_denied_required_read_in_graceful_mode_says_it_was_denied():
    bp = Backpack({"public": 1, "private": 2}, strict=False)
    bp.register_permissions("n", read=["public"])
    view = bp.view(node_id="n")
    with pytest.raises(ReadDenied) as caught:
        view.unpack_required("private")
    error = caught.value
    assert "may not read key 'private'" in str(error) and "denied" in str(error)
    assert "is not in the Backpack" not in str(error)
    assert (error.key, error.node_id) == ("private", "n")
    assert isinstance(error, KeyNotFound)  # code that catches a missing key keeps working
    assert error.rule
    with pytest.raises(ReadDenied):
        bp.unpack_required("private", node_id="n")
    with pytest.raises(ReadDenied):
        bp.get_item("private", node_id="n")
    assert [d.key for d in bp.get_access_denials(node_id="n")] == ["private"] * 3


def test_key_not_found_carries_the_key_and_the_node():
    bp = Backpack({"a": 1})
    with pytest.raises(KeyNotFound) as caught:
        bp.view(node_id="n").unpack_required("missing")
    assert (caught.value.key, caught.value.node_id) == ("missing", "n")
    assert not isinstance(caught.value, ReadDenied)
    assert "key 'missing' is not in the Backpack" in str(caught.value)
    with pytest.raises(KeyNotFound) as outside:
        bp.unpack_required("missing")
    assert (outside.value.key, outside.value.node_id) == ("missing", None)
    with pytest.raises(KeyNotFound) as version:
        bp.get_version("missing")
    assert version.value.key == "missing"

"""Banks and the agents' fields on the read side (crdt.views): bank isolation, the
document_id upsert across authors, fields of the wrong type read as absent, records
without a bank in `default`, bank listing with trust."""

from __future__ import annotations

from crdt import records
from crdt.records import sign
from crdt.views import Views
from tests.forge import Writer
from tests.test_views import Now, T


def test_recall_in_a_bank_sees_only_that_bank(open_replica):
    me = open_replica("me")
    views = Views(me, now_ms=Now())
    me.put(records.memory(me.identity, "tea in default", category="note", ts=T))
    me.put(records.memory(me.identity, "tea in team", category="note", ts=T + 1, bank="team"))
    assert [h.text for h in views.recall("tea", bank="default").hits] == ["tea in default"]
    assert [h.text for h in views.recall("tea", bank="team").hits] == ["tea in team"]
    assert len(views.recall("tea").hits) == 2  # no bank given: every bank
    assert views.bank_known("team") and views.bank_known("default")
    assert not views.bank_known("elsewhere")


def test_a_record_without_a_bank_is_in_default_and_the_field_is_written_only_when_set(
    open_replica,
):
    me = open_replica("me")
    plain = records.memory(me.identity, "x", category="note", ts=T)
    assert "bank" not in plain.fields and "document_id" not in plain.fields
    banked = records.memory(me.identity, "x", category="note", ts=T, bank="b", context="user",
                            metadata={"k": "v"}, timestamp="2026-01-01T00:00:00Z")  # fmt: skip
    assert banked.fields["bank"] == "b" and banked.fields["metadata"] == {"k": "v"}
    views = Views(me, now_ms=Now())
    me.put(plain)
    me.put(banked)
    (m,) = views.recall(bank="b").hits
    assert (m.context, m.metadata, m.timestamp) == ("user", {"k": "v"}, "2026-01-01T00:00:00Z")
    (d,) = views.recall(bank="default").hits
    assert d.bank == "default" and d.context is None and d.metadata == {}


def test_fields_of_the_wrong_type_from_any_author_read_as_absent(open_replica):
    me = open_replica("me")
    other = Writer()
    me.trust(other.id, "other")
    views = Views(me, now_ms=Now())
    odd = sign(other.identity, "memory", {"text": "odd one", "category": "note", "tags": [],
                                          "bank": 7, "document_id": ["x"], "context": {},
                                          "metadata": {"a": 1, "b": "ok"}, "timestamp": 3},
               ts=T)  # fmt: skip
    assert me.ingest(other.put(odd).raw)
    (m,) = views.recall("odd").hits
    assert (m.bank, m.document_id, m.context, m.metadata, m.timestamp) == (
        "default", None, None, {"b": "ok"}, None)


def test_document_id_supersedes_only_the_same_author_and_bank(open_replica):
    me = open_replica("me")
    other = Writer()
    me.trust(other.id, "other")
    views = Views(me, now_ms=Now())
    me.put(records.memory(me.identity, "v1 limits", category="note", ts=T, document_id="d"))
    me.put(records.memory(me.identity, "v2 limits", category="note", ts=T + 5, document_id="d"))
    me.put(records.memory(me.identity, "team limits", category="note", ts=T + 1, bank="t",
                          document_id="d"))  # fmt: skip
    theirs = records.memory(other.identity, "their limits", category="note", ts=T + 9,
                            document_id="d")  # fmt: skip
    assert me.ingest(other.put(theirs).raw)
    assert sorted(h.text for h in views.recall("limits", bank="default").hits) == [
        "their limits", "v2 limits"]  # fmt: skip
    assert [h.text for h in views.recall("limits", bank="t").hits] == ["team limits"]
    current = views.current_document(me.author, "default", "d")
    assert current is not None and current.text == "v2 limits"
    # retracting the newest leaves none current and the older one still superseded
    me.put(records.retract(me.identity, current.id, ts=T + 10))
    assert views.current_document(me.author, "default", "d") is None
    assert [h.text for h in views.recall("limits", bank="default").hits] == ["their limits"]


def test_banks_lists_trusted_authors_banks_with_the_newest_profile(open_replica):
    me = open_replica("me")
    stranger = Writer()
    views = Views(me, now_ms=Now())
    me.put(records.bank(me.identity, "team", ts=T, name="Team", mission="old"))
    me.put(records.bank(me.identity, "team", ts=T + 1, name="Team", mission="share lessons"))
    me.put(records.memory(me.identity, "x", category="note", ts=T + 2, bank="team"))
    assert me.ingest(stranger.put(records.memory(stranger.identity, "y", category="note",
                                                 ts=T, bank="spam")).raw)  # fmt: skip
    (team,) = views.banks()
    assert (team["bank_id"], team["mission"], team["memories"]) == ("team", "share lessons", 1)
    assert {b["bank_id"] for b in views.banks(include_untrusted=True)} == {"team", "spam"}
    assert views.bank_profile("team", me.author) == ("Team", "share lessons")


def test_first_seen_is_when_this_host_stored_it_also_after_a_restart(tmp_path):
    from crdt import Replica

    with Replica.open(tmp_path / "a", create=True) as r:
        views = Views(r)
        rec = records.memory(r.identity, "seen once", category="note", ts=T)
        r.put(rec)
        stored = r.origin(rec.id)["received_at"]
        assert abs(views.first_seen(rec.id) - stored) <= 5
        views.close()
    with Replica.open(tmp_path / "a") as r:
        views = Views(r)
        assert views.first_seen(rec.id) == stored  # read back from the store
        assert views.first_seen("0" * 64) is None
        views.close()

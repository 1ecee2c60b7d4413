"""The audit core: events chain by hash, `audit verify` walks them and names the first bad one."""

import hashlib
import threading
from datetime import UTC, datetime

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, text, update

from review.audit.chain import record_event
from review.audit.hashing import (
    GENESIS_HASH,
    canonical_json,
    chain_prefix,
    event_hash,
    event_hash_record,
    format_time,
)
from review.audit.verify import log_head, verify_chain
from review.models import AuditEvent
from tests.helpers import append_events, as_an_attacker


def _append(svc, n, kind="test.event"):
    append_events(svc, n, kind, note="héllo ✓")  # a payload with text beyond ASCII


def test_events_link_each_to_the_previous_hash(svc):
    _append(svc, 3)
    with svc.db.read() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
        assert [e.seq for e in events] == [1, 2, 3]
        assert events[0].prev_hash == GENESIS_HASH
        assert events[1].prev_hash == events[0].hash
        assert events[2].prev_hash == events[1].hash
        result = verify_chain(session)
    assert result.ok and result.count == 3  # system events without an agent: shard 0's
    assert result.heads[0] == (3, events[2].hash)
    assert [(e.shard, e.shard_seq) for e in events] == [(0, 1), (0, 2), (0, 3)]


def test_an_event_is_written_only_if_its_transaction_commits(svc):
    try:
        with svc.db.write() as session:
            record_event(session, actor_kind="system", actor_id="t", event_type="x")
            raise RuntimeError("the state change failed")
    except RuntimeError:
        pass
    _append(svc, 1)
    with svc.db.read() as session:
        [stored] = session.scalars(select(AuditEvent)).all()
        # its shard's first place; PostgreSQL's sequence may have skipped a global seq
        assert (stored.event_type, stored.shard, stored.shard_seq) == ("test.event", 0, 1)
        assert verify_chain(session).ok


def test_audit_verify_prints_ok_with_count_and_head(svc, runner):
    _append(svc, 2)
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0
    with svc.db.read() as session:
        head = log_head(session)
    assert f"OK 2 events, head {head.hash}" in result.output  # PROTOCOL.md section 7
    if head.shards > 1:
        assert f"(the Merkle root over {head.shards} shards' heads)" in result.output


def test_an_edited_payload_is_caught_and_named(svc, runner):
    _append(svc, 4)
    as_an_attacker(
        svc,
        update(AuditEvent).where(AuditEvent.seq == 3).values(payload='{"i":99,"note":"forged"}'),
    )
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert "event 3" in result.output and "edited" in result.output


def test_an_edited_actor_is_caught(svc):
    _append(svc, 2)
    as_an_attacker(svc, update(AuditEvent).where(AuditEvent.seq == 1).values(actor_id="mallory"))
    with svc.db.read() as session:
        result = verify_chain(session)
    assert not result.ok and result.bad_seq == 1


def test_a_deleted_event_in_the_middle_is_caught(svc, runner):
    _append(svc, 4)
    as_an_attacker(svc, delete(AuditEvent).where(AuditEvent.seq == 2))
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1 and "event 2" in result.output


def test_a_removed_tail_is_caught_by_the_head(svc):
    _append(svc, 4)
    as_an_attacker(svc, delete(AuditEvent).where(AuditEvent.seq >= 3))
    with svc.db.read() as session:
        result = verify_chain(session)
    assert not result.ok and "removed" in result.problem


def test_concurrent_writers_build_one_gapless_chain(svc):
    errors = []

    def writer(k):
        try:
            _append(svc, 10, kind=f"writer.{k}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with svc.db.read() as session:
        result = verify_chain(session)
        assert result.ok and result.count == 60
        assert session.execute(text("SELECT COUNT(DISTINCT seq) FROM audit_events")).scalar() == 60


@settings(max_examples=200, deadline=None)
@given(
    seq=st.integers(1, 2**53 - 1),
    shard=st.integers(0, 255),
    shard_seq=st.integers(1, 2**53 - 1),
    actor_id=st.text(),
    agent=st.none() | st.text(),
    payload=st.text(),
    prev_hash=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    microsecond=st.integers(0, 999_999),
)
def test_the_prefix_postgresql_finishes_gives_the_same_hash(
    seq, shard, shard_seq, actor_id, agent, payload, prev_hash, microsecond
):
    """Migration 0025's countersign_append hashes prefix + prev_hash + '","seq":' + seq +
    ',"shard":' + shard + ',"shard_seq":' + shard_seq + '}' in the server."""
    fields = {
        "at": datetime(2026, 11, 21, 10, 0, 0, microsecond, tzinfo=UTC),
        "actor_kind": "agent",
        "actor_id": actor_id,
        "event_type": "deferral.received",
        "agent": agent,
        "deferral_id": "dfr_1",
        "payload": payload,
    }
    tail = f'","seq":{seq},"shard":{shard},"shard_seq":{shard_seq}}}'
    text = chain_prefix(**fields) + prev_hash + tail
    expected = event_hash(seq=seq, prev_hash=prev_hash, shard=shard, shard_seq=shard_seq, **fields)
    assert hashlib.sha256(text.encode()).hexdigest() == expected


def test_sqlite_driver_statements_store_what_sqlalchemy_stores(svc):
    """review/driver_statements.py runs SQLite's chain statements on the driver with
    SQLAlchemy's own SQL and bind processors: rows written both ways read back the same."""
    from sqlalchemy import insert

    from review.driver_statements import driver
    from review.models import AuditHead

    if not svc.db.is_sqlite:
        pytest.skip("SQLite only")
    when = datetime(2026, 11, 21, 10, 0, 0, 123456, tzinfo=UTC)
    row = {
        "seq": 1, "at": when, "actor_kind": "system", "actor_id": "test",
        "event_type": "test.event", "agent": None, "deferral_id": None,
        "payload": "{}", "prev_hash": GENESIS_HASH, "hash": "a" * 64,
        "shard": 0, "shard_seq": None,
    }  # fmt: skip
    table = AuditEvent.__table__
    with svc.db.write() as session:
        driver.execute(session.connection(), insert(table), row)
        session.execute(insert(table), {**row, "seq": 2, "hash": "b" * 64})
    with svc.db.read() as session:
        stored = [
            {
                k: v
                for k, v in session.execute(
                    text("SELECT * FROM audit_events WHERE seq = :n"), {"n": n}
                )
                .one()
                ._asdict()
                .items()
                if k not in ("seq", "hash")
            }
            for n in (1, 2)
        ]
        assert stored[0] == stored[1]
        assert session.get(AuditEvent, 1).at == when
    with svc.db.write() as session, pytest.raises(KeyError):
        driver.execute(session.connection(), insert(AuditHead.__table__), {"seq": 1})


# Any text a database can hold (no lone surrogates: neither database stores them).
_stored_text = st.text(st.characters(exclude_categories=("Cs",)))


@settings(max_examples=300, deadline=None)
@given(
    seq=st.integers(1, 2**53 - 1),
    texts=st.lists(_stored_text, min_size=3, max_size=3),
    nullable=st.lists(st.one_of(st.none(), _stored_text), min_size=2, max_size=2),
    payload=_stored_text,
    place=st.none() | st.tuples(st.integers(0, 255), st.integers(1, 2**53 - 1)),
)
def test_the_hashed_record_is_rfc_8785_for_any_field_text(seq, texts, nullable, payload, place):
    """Sharded events hash their shard and place too; events from before shards do not."""
    at = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)
    fields = {
        "seq": seq,
        "at": at,
        "actor_kind": texts[0],
        "actor_id": texts[1],
        "event_type": texts[2],
        "agent": nullable[0],
        "deferral_id": nullable[1],
        "payload": payload,
        "prev_hash": GENESIS_HASH,
    }
    record = {k: v for k, v in fields.items() if k not in ("at", "payload")}
    record["at"] = format_time(at)
    record["payload_sha256"] = hashlib.sha256(payload.encode()).hexdigest()
    if place is not None:
        fields["shard"], fields["shard_seq"] = place
        record["shard"], record["shard_seq"] = place
    assert event_hash_record(**fields).encode() == rfc8785.dumps(record)


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)  # beyond 2^53 too: refused, as rfc8785 refuses it
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),  # lone surrogates too: refused, as rfc8785 refuses them
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=4) | st.sampled_from(["a", "é", "\ue000", "😀"]), inner)
    ),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(_json_values)
def test_canonical_json_is_rfc_8785_byte_for_byte_or_refuses_what_it_refuses(value):
    """canonical_json writes plain values with the C encoder: it must agree with
    rfc8785 on every value, and refuse what rfc8785 refuses."""
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as refused:
        with pytest.raises(type(refused)):
            canonical_json(value)
    else:
        assert canonical_json(value) == expected


# Verify writes each record in one quick f-string and falls back to record_text only when
# that does not hash as stored: these check the quick way against the careful one.

ODD_TEXT = 'quote " backslash \\ newline \n tab \t bell \x07 del \x7f é ✓ \u2028 😀'


def _append_odd(svc, n):
    for i in range(n):
        with svc.db.write() as session:
            record_event(
                session,
                actor_kind="user",
                actor_id=f"{ODD_TEXT} {i}",
                event_type=f"test.{ODD_TEXT}",
                agent=None,
                deferral_id=None,
                payload={"note": ODD_TEXT},
            )


def test_fields_that_json_escapes_verify(svc):
    _append_odd(svc, 3)
    with svc.db.read() as session:
        result = verify_chain(session)
    assert result.ok and result.count == 3


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("actor_id", f"{ODD_TEXT} 9"),
        ("actor_kind", "agent"),
        ("event_type", "test.other"),
        ("agent", "bot"),
        ("deferral_id", "dfr_x"),
        ("payload", '{"note":"forged"}'),
        ("at", datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=UTC)),
    ],
)
def test_an_edit_to_any_hashed_field_is_caught_and_named(svc, field, value):
    _append_odd(svc, 3)
    as_an_attacker(svc, update(AuditEvent).where(AuditEvent.seq == 2).values({field: value}))
    with svc.db.read() as session:
        result = verify_chain(session)
    assert not result.ok and result.bad_seq == 2 and "edited" in result.problem


def test_an_escaped_character_edited_into_another_is_caught(svc):
    _append_odd(svc, 2)
    with svc.db.read() as session:
        actor = session.get(AuditEvent, 2).actor_id
    forged = actor.replace("\n", "\r")  # escapes to \r instead of \n, the same length
    as_an_attacker(svc, update(AuditEvent).where(AuditEvent.seq == 2).values(actor_id=forged))
    with svc.db.read() as session:
        result = verify_chain(session)
    assert not result.ok and result.bad_seq == 2 and "edited" in result.problem


def test_a_time_stored_in_another_form_verifies_and_a_moved_time_is_caught(svc):
    """SQLite: a stored time in another ISO form is read as the model would read it."""
    if not svc.db.is_sqlite:
        pytest.skip("PostgreSQL stores a timestamp, not text")
    _append(svc, 3)
    with svc.db.read() as session:
        at = session.get(AuditEvent, 2).at
    other_form = text("UPDATE audit_events SET at = :at WHERE seq = 2")
    as_an_attacker(svc, other_form.bindparams(at=at.isoformat()))  # 'T', '+00:00'
    with svc.db.read() as session:
        assert verify_chain(session).ok
    moved = (at.replace(microsecond=(at.microsecond + 1) % 1_000_000)).isoformat()
    as_an_attacker(svc, other_form.bindparams(at=moved))
    with svc.db.read() as session:
        result = verify_chain(session)
    assert not result.ok and result.bad_seq == 2 and "edited" in result.problem


def test_a_field_of_another_type_is_named_as_edited(svc):
    """SQLite stores whatever it is given: a blob where text was is an edit, not a crash."""
    if not svc.db.is_sqlite:
        pytest.skip("PostgreSQL refuses a value of another type")
    _append(svc, 3)
    as_an_attacker(svc, text("UPDATE audit_events SET actor_id = X'74657374' WHERE seq = 2"))
    with svc.db.read() as session:
        result = verify_chain(session)
    assert not result.ok and result.bad_seq == 2 and "edited" in result.problem

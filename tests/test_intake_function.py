"""Intake hands the database every column of a deferral and every field of its events.

On PostgreSQL intake is one call of `countersign_intake` (migration 0008; since 0025 it
chains the events with `countersign_append`): the deferral
arrives as JSON and becomes a row through `jsonb_populate_record`, which gives a key it
is not handed NULL without a word. So a column added to `deferrals` but forgotten in
`deferral_values` would be stored NULL there, and an event field the function does
not read would be stored NULL or hashed differently. These tests fail first.
"""

import re
import uuid
from dataclasses import replace
from inspect import signature
from pathlib import Path

from sqlalchemy import inspect, select, text

from review.agents.registry import signers
from review.audit import export, verifier
from review.audit.chain import placed_events
from review.audit.checkpoints import load_key
from review.audit.hashing import event_hash_record, link, stored_event_hash
from review.intake.deferral_rows import deferral_values, intake_events
from review.intake.deferrals import create_deferral
from review.intake.policy_routes import Routed
from review.intake.preparation import prepare
from review.intake.principals import Principal
from review.models import AuditEvent, Deferral, undecided_fields, utcnow
from tests.helpers import refund

# Columns of `deferrals` that intake leaves to the database. None: the function writes
# the whole row (`INSERT ... SELECT * FROM jsonb_populate_record`), so even a column with
# a server default would get NULL from a missing key, not its default.
FILLED_BY_THE_DATABASE: frozenset[str] = frozenset()

# Columns of `audit_events` that `countersign_append` (which the intake function calls)
# computes under the shard's lock.
CHAINED_BY_THE_SERVER = frozenset({"seq", "shard_seq", "prev_hash", "hash"})

# Every optional field of the request, so the stored row can tell a dropped value
# (NULL) from one that was NULL to begin with.
EVERY_FIELD = refund(
    resource={"type": "invoice", "id": "INV-1"}, expires_in=900, intent="refund INV-1, please"
)
# A verified principal, as a token would make it (tests/test_principals.py verifies real ones).
VERIFIED = Principal(
    "alice@example.com",
    "Alice",
    verified=True,
    issuer="https://id.example.com",
    subject="u-1",
    email="alice@example.com",
    groups=("finance",),
)


# A route to a reviewer group with a quorum of 3 (review/intake/policy_routes.py).
ROUTED = Routed("finance", 3, {"group": "finance", "quorum": 3, "rule": "big_refund"})


def _prepared(svc):
    return replace(prepare(svc, EVERY_FIELD), principal=VERIFIED, routed=ROUTED)


MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations" / "versions"


def _signer(svc, agent):
    with svc.db.read() as session:
        return signers(session, slug=agent.slug)[0]


def _table_columns(table) -> set[str]:
    return {c.name for c in table.columns}


def _append_function_source(svc) -> str:
    """The body of `countersign_append`, which chains intake's events (and every other
    append) on PostgreSQL: PostgreSQL's own copy, else the newest migration defining it."""
    if not svc.db.is_sqlite:
        with svc.db.read() as session:
            return session.execute(
                text("SELECT prosrc FROM pg_proc WHERE proname = 'countersign_append'")
            ).scalar_one()
    defining = [
        path
        for path in sorted(MIGRATIONS.glob("*.py"))
        if re.search(r"CREATE (OR REPLACE )?FUNCTION countersign_append\b", path.read_text())
    ]
    text_ = defining[-1].read_text()
    return text_[text_.index("FUNCTION countersign_append") : text_.index("LANGUAGE plpgsql")]


def test_it_hands_intake_every_column_of_the_deferrals_table(svc, agent):
    values = deferral_values(svc, _signer(svc, agent).id, "msg_columns", _prepared(svc), utcnow())
    model = _table_columns(Deferral.__table__)
    with svc.db.read() as session:
        catalog = {c["name"] for c in inspect(session.connection()).get_columns("deferrals")}
    assert catalog == model, "the migrations and review/models/ disagree on deferrals"
    missing = model - FILLED_BY_THE_DATABASE - set(values)
    assert not missing, f"deferral_values does not fill {sorted(missing)}"
    assert set(values) == model - FILLED_BY_THE_DATABASE


def test_it_stores_every_column_of_a_new_deferral_as_handed_over(svc, agent):
    received = create_deferral(svc, _signer(svc, agent), f"msg_{uuid.uuid4().hex}", _prepared(svc))
    assert received.created
    handed = vars(received.deferral)
    # `canary` is None for every agent's request (only review/canaries/seeding.py sets it).
    always_none = set(undecided_fields()) | {"canary"}
    assert {k for k, v in handed.items() if v is None} <= always_none, (
        "give EVERY_FIELD a value for each new column, so a dropped one shows"
    )
    table = Deferral.__table__
    with svc.db.read() as session:
        stored = session.execute(select(table).where(table.c.id == handed["id"])).one()._asdict()
    for column in _table_columns(table) - FILLED_BY_THE_DATABASE:
        assert stored[column] == handed[column], column


def test_it_hands_the_intake_function_every_field_an_event_stores(svc):
    event = {"actor_kind": "agent", "actor_id": "billing-bot", "event_type": "deferral.received"}
    with svc.db.read() as session:
        [row] = placed_events(session.connection(), [event])
    columns = _table_columns(AuditEvent.__table__)
    assert set(row) - {"prefix"} == columns - CHAINED_BY_THE_SERVER
    source = _append_function_source(svc)
    assert set(re.findall(r"event->>'(\w+)'", source)) == set(row)
    inserted = re.search(r"INSERT INTO audit_events \(([^)]*)\)", source)
    assert inserted is not None
    assert {c.strip() for c in inserted.group(1).split(",")} == columns
    # Every stored field but the hash itself is hashed (the payload by its SHA-256).
    assert set(signature(event_hash_record).parameters) == columns - {"hash"}


def test_it_stores_every_field_of_the_intake_events_as_handed_over(svc, agent):
    signer = _signer(svc, agent)
    prepared = prepare(svc, EVERY_FIELD)
    received = create_deferral(svc, signer, f"msg_{uuid.uuid4().hex}", prepared)
    values = vars(received.deferral)
    with svc.db.read() as session:
        handed = placed_events(session.connection(), intake_events(signer.slug, values, prepared))
    table = AuditEvent.__table__
    with svc.db.read() as session:
        stored = session.execute(
            select(table).where(table.c.deferral_id == values["id"]).order_by(table.c.seq)
        ).all()
    assert len(stored) == len(handed) == 2
    assert stored[1].prev_hash == stored[0].hash  # one deferral: one shard, in order
    assert stored[1].shard == stored[0].shard and stored[1].shard_seq == stored[0].shard_seq + 1
    for event, row in zip(handed, stored, strict=True):
        for field in set(event) - {"prefix"}:
            assert getattr(row, field) == event[field], field
        assert row.hash == link(event["prefix"], row.prev_hash, row.seq, row.shard, row.shard_seq)
        assert row.hash == stored_event_hash(row)


def test_it_exports_every_field_of_an_event_for_the_offline_verifier(svc, agent):
    received = create_deferral(svc, _signer(svc, agent), "msg_export", prepare(svc, EVERY_FIELD))
    key = load_key(svc.settings.audit_key_file)
    with svc.db.read() as session:
        events = [r for r in export.records(session, key) if r["record"] == "event"]
    assert [r["deferral_id"] for r in events].count(received.deferral.id) == 2
    for record in events:
        assert set(record) == _table_columns(AuditEvent.__table__) | {"record"}
        assert verifier.event_hash(record) == record["hash"]
    assert set(export.CSV_COLUMNS) >= _table_columns(AuditEvent.__table__)

"""Chain shards: the audit log as several hash chains, each with its own head and lock,
every signed checkpoint committing to all their heads through a Merkle root.

The other audit tests run with whatever shard count the test database was made with
(COUNTERSIGN_AUDIT_SHARDS, default config/defaults.toml); these record four shards
themselves (a new epoch, as `audit shards 4` does), so they exercise several chains
whatever the environment says.
"""

import base64
import hashlib
import json
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from sqlalchemy import delete, select, text, update

from review.audit import checkpoints, parallel_verify, shards
from review.audit import verifier as offline
from review.audit.chain import chained_write, record_event, record_events
from review.audit.hashing import (
    GENESIS_HASH,
    event_hash,
    heads_root,
    merkle_root,
    payload_json,
    shard_of,
)
from review.audit.verify import log_head, read_heads, verify_chain
from review.db import Database
from review.migrate import upgrade
from review.models import AuditCheckpoint, AuditEpoch, AuditEvent, AuditHead, utcnow
from review.reviewing.claims import claim_batch
from review.reviewing.decisions import decide
from review.users import create_user
from tests.helpers import ROOT, Browser, approved, as_an_attacker, reviewer

VERIFIER = ROOT / "review" / "audit" / "verifier.py"


@pytest.fixture
def four(svc):
    """Four shards from the next event on (a new epoch, unless there are four already)."""
    with svc.db.write() as session:
        shards.record_epoch(session, 4)
    yield svc
    shards.forget_counts()


def deferral_events(svc, deferrals: int, per: int = 3, prefix: str = "dfr_t") -> None:
    """`per` events for each of `deferrals` deferrals, interleaved, one transaction each."""
    for i in range(per):
        for d in range(deferrals):
            with svc.db.write() as session:
                record_event(
                    session,
                    actor_kind="system",
                    actor_id="test",
                    event_type=f"test.step_{i}",
                    deferral_id=f"{prefix}{d:03d}",
                    payload={"d": d, "i": i, "note": "héllo ✓"},
                )


def events_by_seq(svc) -> list[AuditEvent]:
    with svc.db.read() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))


def verify(runner, *args):
    result = runner.invoke(args=["audit", "verify", *args])
    return result.exit_code, result.output.strip()


# --- placing events -------------------------------------------------------------------------


def test_a_deferrals_events_are_one_shards_chain_and_deferrals_spread_over_all(four):
    deferral_events(four, 16)
    events = events_by_seq(four)
    by_deferral: dict[str, list[AuditEvent]] = {}
    for e in events:
        by_deferral.setdefault(e.deferral_id, []).append(e)
    for deferral_id, mine in by_deferral.items():
        assert {e.shard for e in mine} == {shard_of(deferral_id, 4)}
        places = [e.shard_seq for e in mine]
        assert places == sorted(places)  # in order along its shard
    assert {e.shard for e in events} == {0, 1, 2, 3}
    for shard in range(4):  # each shard: places 1, 2, 3... each naming the one before
        chain = [e for e in events if e.shard == shard]
        assert [e.shard_seq for e in chain] == list(range(1, len(chain) + 1))
        assert [e.prev_hash for e in chain] == [GENESIS_HASH] + [e.hash for e in chain[:-1]]
    with four.db.read() as session:
        result = verify_chain(session)
        heads = read_heads(session)
    assert result.ok and result.count == 48 and len(heads) == 4
    assert result.head == heads_root([(s, p, h) for s, (p, h) in heads.items()])


def test_one_transaction_may_append_to_several_shards(four):
    with four.db.write() as session:
        record_events(
            session,
            [
                {"actor_kind": "system", "actor_id": "t", "event_type": "x", "deferral_id": d}
                for d in ("dfr_a", "dfr_b", "dfr_c", "dfr_d", "dfr_a")
            ],
        )
    events = events_by_seq(four)
    assert [e.deferral_id for e in events] == ["dfr_a", "dfr_b", "dfr_c", "dfr_d", "dfr_a"]
    same = [e for e in events if e.shard == events[4].shard]
    assert events[4].shard == events[0].shard and events[4].prev_hash == same[-2].hash
    with four.db.read() as session:
        assert verify_chain(session).ok


def test_writers_on_many_deferrals_at_once_build_gapless_shards(four):
    errors = []

    def writer(k):
        try:
            deferral_events(four, 5, per=2, prefix=f"dfr_w{k}_")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with four.db.read() as session:
        result = verify_chain(session)
    assert result.ok and result.count == 60, result.describe()


def test_the_service_places_a_real_deferrals_whole_story_in_one_shard(four, agent):
    d = approved(four, agent, reviewer(four))
    with four.db.read() as session:
        mine = session.scalars(
            select(AuditEvent).where(AuditEvent.deferral_id == d["id"]).order_by(AuditEvent.seq)
        ).all()
        assert verify_chain(session).ok
    assert len(mine) >= 4  # received, evaluated, claimed, approved
    assert {e.shard for e in mine} == {shard_of(d["id"], 4)}
    assert all(b.shard_seq > a.shard_seq for a, b in zip(mine, mine[1:], strict=False))


# --- verifying --------------------------------------------------------------------------------


def in_shard(events, shard):
    return [e for e in events if e.shard == shard]


def test_an_edit_in_any_shard_is_named(four):
    deferral_events(four, 8)
    victim = in_shard(events_by_seq(four), 3)[1]
    as_an_attacker(
        four, update(AuditEvent).where(AuditEvent.seq == victim.seq).values(actor_id="x")
    )
    with four.db.read() as session:
        result = verify_chain(session)
    assert not result.ok and result.bad_seq == victim.seq and "edited" in result.problem


def test_an_event_removed_from_the_middle_of_a_shard_is_a_gap_in_that_shard(four):
    deferral_events(four, 8)
    events = events_by_seq(four)
    shard = max(range(4), key=lambda s: len(in_shard(events, s)))
    victim = in_shard(events, shard)[1]
    as_an_attacker(four, delete(AuditEvent).where(AuditEvent.seq == victim.seq))
    with four.db.read() as session:
        result = verify_chain(session)
    assert not result.ok and f"gap in shard {shard}: expected 2, found 3" in result.problem


def test_an_event_moved_to_another_shard_breaks_its_hash(four):
    deferral_events(four, 8)
    victim = in_shard(events_by_seq(four), 1)[-1]
    as_an_attacker(
        four, update(AuditEvent).where(AuditEvent.seq == victim.seq).values(shard=0, shard_seq=999)
    )
    with four.db.read() as session:
        result = verify_chain(session)
    assert not result.ok


def test_a_cut_shard_tail_with_its_head_rewritten_is_caught_by_the_checkpoint(four, runner):
    deferral_events(four, 8)
    checkpoints.take(four, force=True)
    chain = in_shard(events_by_seq(four), 1)
    keep = chain[-3]
    as_an_attacker(
        four,
        delete(AuditEvent).where(AuditEvent.shard == 1, AuditEvent.shard_seq > keep.shard_seq),
    )
    with four.db.write() as session:
        session.execute(
            update(AuditHead).where(AuditHead.shard == 1).values(seq=keep.shard_seq, hash=keep.hash)
        )
    with four.db.read() as session:
        assert verify_chain(session).ok  # the chains alone cannot tell
    code, output = verify(runner)
    assert code == 1 and "shard 1 ends at" in output and "events removed" in output, output


@pytest.fixture
def small_ranges(monkeypatch):
    monkeypatch.setattr(parallel_verify, "MIN_EVENTS_PER_JOB", 8)


def both_ways(svc):
    with svc.db.read() as session:
        alone = verify_chain(session)
    with svc.db.read() as session:
        parallel = verify_chain(session, jobs=3)
    assert parallel == alone
    return parallel


def test_parallel_ranges_join_every_shard(four, small_ranges):
    deferral_events(four, 10)  # 30 events: three ranges, each holding every shard
    result = both_ways(four)
    assert result.ok and result.count == 30


def test_parallel_ranges_find_what_one_walk_finds_in_a_shard(four, small_ranges):
    deferral_events(four, 10)
    events = events_by_seq(four)
    later = [e for e in in_shard(events, 2) if e.seq > 12]  # in the second range or after
    as_an_attacker(four, delete(AuditEvent).where(AuditEvent.seq == later[0].seq))
    result = both_ways(four)
    assert not result.ok and "gap in shard 2" in result.problem
    forged = "f" * 64
    victim = in_shard(events, 3)[-1]
    as_an_attacker(
        four, update(AuditEvent).where(AuditEvent.seq == victim.seq).values(prev_hash=forged)
    )
    assert not both_ways(four).ok


# --- checkpoints, the witness, export and the offline verifier -----------------------------------


def test_merkle_root_is_rfc_6962s_tree_hash():
    leaf = lambda b: hashlib.sha256(b"\x00" + b).digest()  # noqa: E731
    node = lambda a, b: hashlib.sha256(b"\x01" + a + b).digest()  # noqa: E731
    a, b, c = b"a", b"b", b"c"
    assert merkle_root([a]) == leaf(a).hex()
    assert merkle_root([a, b]) == node(leaf(a), leaf(b)).hex()
    assert merkle_root([a, b, c]) == node(node(leaf(a), leaf(b)), leaf(c)).hex()
    assert offline.merkle_root([a, b, c]) == merkle_root([a, b, c])
    heads = [(0, 3, "a" * 64), (1, 0, GENESIS_HASH), (2, 7, "b" * 64)]
    assert offline.heads_root([list(h) for h in heads]) == heads_root(heads)
    assert offline.heads_root([[0, 1, "a" * 64], [2, 1, "b" * 64]]) is None  # shard 1 left out


def test_a_checkpoint_signs_the_root_over_every_shards_head(four, runner):
    deferral_events(four, 8)
    result = runner.invoke(args=["audit", "checkpoint"])
    assert result.exit_code == 0 and "24 events in 4 shards, root of their heads" in result.output
    with four.db.read() as session:
        [c] = checkpoints.all_checkpoints(session)
        heads = read_heads(session)
    listed = json.loads(c.heads)
    assert listed == [[s, p, h] for s, (p, h) in sorted(heads.items())]
    assert c.head_hash == heads_root([tuple(h) for h in listed]) and c.seq == 24
    key = checkpoints.load_key(four.settings.audit_key_file)
    assert checkpoints.signature_valid(key.public_raw, c)
    assert json.loads(offline.signed_message(checkpoints.as_record(c))) == {
        "at": checkpoints.as_record(c)["at"],
        "root": c.head_hash,
        "seq": 24,
        "shards": 4,
    }
    with open(four.settings.audit_witness_file) as fh:
        line = json.loads(fh.read().splitlines()[-1])
    assert line["heads"] == listed and line["hash"] == c.head_hash
    code, output = verify(runner)
    assert code == 0 and output.startswith("OK 24 events, head "), output
    assert "(the Merkle root over 4 shards' heads)" in output


def test_a_checkpoint_whose_listed_heads_were_changed_fails(four, runner):
    deferral_events(four, 4)
    checkpoints.take(four, force=True)
    with four.db.read() as session:
        [c] = checkpoints.all_checkpoints(session)
    listed = json.loads(c.heads)
    listed[1][2] = "f" * 64
    as_an_attacker(four, update(AuditCheckpoint).values(heads=json.dumps(listed)))
    code, output = verify(runner)
    assert code == 1 and "bad signature" in output, output


def test_a_witnessed_shard_head_catches_a_rewritten_shard(four, runner):
    deferral_events(four, 8)
    checkpoints.take(four, force=True)
    chain = in_shard(events_by_seq(four), 2)
    as_an_attacker(four, delete(AuditCheckpoint))  # the database's own copies go
    rewrite_shard(four, chain, {"forged": True})
    code, output = verify(runner)
    assert code == 1 and "chain disagrees with witnessed head at" in output
    assert "of shard 2" in output, output


def rewrite_shard(svc, chain, payload):
    """An insider's rewrite of a whole shard: first event's payload, every hash after."""
    statements, prev = [], GENESIS_HASH
    for n, e in enumerate(chain):
        text_ = payload_json(payload) if n == 0 else e.payload
        fields = {
            c: getattr(e, c)
            for c in ("seq", "at", "actor_kind", "actor_id", "event_type", "agent", "deferral_id")
        }
        new = event_hash(
            **fields, payload=text_, prev_hash=prev, shard=e.shard, shard_seq=e.shard_seq
        )
        statements.append(
            update(AuditEvent)
            .where(AuditEvent.seq == e.seq)
            .values(payload=text_, prev_hash=prev, hash=new)
        )
        prev = new
    as_an_attacker(svc, *statements)
    with svc.db.write() as session:
        session.execute(
            update(AuditHead).where(AuditHead.shard == chain[0].shard).values(hash=prev)
        )


def run_verifier(path, *args):
    out = subprocess.run(
        [sys.executable, str(VERIFIER), str(path), *args], capture_output=True, text=True
    )
    return out.returncode, out.stdout.strip()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_sharded_export_passes_the_offline_verifier(four, runner, tmp_path, fmt):
    deferral_events(four, 8)
    checkpoints.take(four, force=True)
    deferral_events(four, 3, per=1, prefix="dfr_late")
    exported = runner.invoke(args=["audit", "export", "--format", fmt]).output
    path = tmp_path / f"log.{fmt}"
    path.write_text(exported, encoding="utf-8")
    key = checkpoints.load_key(four.settings.audit_key_file).public_b64
    code, output = run_verifier(path, "--public-key", key)
    assert code == 0 and output.startswith("OK 27 events, head "), output
    assert "(the Merkle root over 4 shards' heads)" in output
    with four.db.read() as session:
        assert log_head(session).hash in output  # the root over the shards' heads now
    witness = four.settings.audit_witness_file
    code, output = run_verifier(path, "--public-key", key, "--trusted", witness)
    assert code == 0 and "1 trusted checkpoints agree" in output, output


def test_the_offline_verifier_catches_a_shard_missing_its_tail(four, runner, tmp_path):
    deferral_events(four, 8)
    lines = runner.invoke(args=["audit", "export"]).output.splitlines(keepends=True)
    records = [json.loads(line) for line in lines]
    last_of_shard_1 = max(
        n for n, r in enumerate(records) if r["record"] == "event" and r["shard"] == 1
    )
    del records[last_of_shard_1]
    records[-1]["events"] -= 1  # the end record's count fixed up too
    path = tmp_path / "cut.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    code, output = run_verifier(path)
    assert code == 1 and "shard 1 ends at" in output, output


# --- the evidence page ---------------------------------------------------------------------------


def test_the_evidence_page_names_each_events_shard_and_place(four, app, agent):
    d = approved(four, agent, reviewer(four))
    with four.db.write() as session:
        create_user(session, "ada", "admin", "correct horse battery")
    page = Browser(app.test_client(), "ada").get(f"/audit/deferrals/{d['id']}")
    html = page.get_data(as_text=True)
    with four.db.read() as session:
        first = session.scalars(
            select(AuditEvent).where(AuditEvent.deferral_id == d["id"]).order_by(AuditEvent.seq)
        ).first()
    assert f"shard {first.shard}, place {first.shard_seq}" in html
    index = Browser(app.test_client(), "ada").get("/audit").get_data(as_text=True)
    assert "in 4 shards" in index


# --- epochs and the migration from one chain ------------------------------------------------------


def test_a_new_shard_count_is_a_new_epoch_and_head_rows_are_never_removed(four, runner):
    deferral_events(four, 4)
    result = runner.invoke(args=["audit", "shards", "6"])
    assert result.exit_code == 0 and "6 shards from event 13 on" in result.output
    deferral_events(four, 12, per=1, prefix="dfr_six")
    result = runner.invoke(args=["audit", "shards", "2"])
    assert result.exit_code == 0
    deferral_events(four, 4, per=1, prefix="dfr_two")
    with four.db.read() as session:
        assert len(read_heads(session)) == 6
        assert [e.shards for e in shards.epochs(session)][-2:] == [6, 2]
        later = session.scalars(
            select(AuditEvent.shard).where(AuditEvent.deferral_id.like("dfr_two%"))
        ).all()
    assert set(later) <= {0, 1}
    checkpoints.take(four, force=True)
    code, output = verify(runner)
    assert code == 0 and "over 6 shards' heads" in output, output  # frozen ones too
    again = runner.invoke(args=["audit", "shards", "2"])
    assert "already 2 shards" in again.output


def test_upgrading_a_single_chain_keeps_its_hashes_and_shards_what_follows(
    empty_database_url, monkeypatch, tmp_path
):
    """Events and a checkpoint written as before migration 0025 still verify after it;
    new events spread over the shards from the recorded epoch on."""
    monkeypatch.setenv("COUNTERSIGN_AUDIT_SHARDS", "3")
    db = Database(empty_database_url)
    key = checkpoints.load_key(tmp_path / "key.pem")
    try:
        upgrade(db, "0024")
        prev, start = GENESIS_HASH, utcnow() - timedelta(minutes=5)
        with db.engine.begin() as conn:
            for seq in range(1, 6):
                fields = {
                    "seq": seq,
                    "at": start + timedelta(seconds=seq),
                    "actor_kind": "system",
                    "actor_id": "before",
                    "event_type": "test.old",
                    "agent": None,
                    "deferral_id": f"dfr_old{seq}",
                    "payload": payload_json({"seq": seq}),
                    "prev_hash": prev,
                }
                prev = event_hash(**fields)
                conn.execute(
                    text(
                        "INSERT INTO audit_events (seq, at, actor_kind, actor_id, event_type, "
                        "agent, deferral_id, payload, prev_hash, hash) VALUES (:seq, :at, "
                        ":actor_kind, :actor_id, :event_type, :agent, :deferral_id, :payload, "
                        ":prev_hash, :hash)"
                    ),
                    {**fields, "hash": prev},
                )
            conn.execute(text("UPDATE audit_head SET seq = 5, hash = :h WHERE id = 1"), {"h": prev})
            at = utcnow()
            signature = base64.b64encode(key.private.sign(checkpoints.message(5, prev, at)))
            conn.execute(
                text(
                    "INSERT INTO audit_checkpoints (seq, head_hash, at, key_id, signature) "
                    "VALUES (5, :h, :at, :k, :s)"
                ),
                {"h": prev, "at": at, "k": key.key_id, "s": signature.decode()},
            )
        upgrade(db)
        shards.forget_counts()
        with db.read() as session:
            assert [(e.epoch, e.shards, e.first_seq) for e in shards.epochs(session)] == [
                (0, 1, 1),
                (1, 3, 6),
            ]
            assert read_heads(session) == {0: (5, prev), 1: (0, GENESIS_HASH), 2: (0, GENESIS_HASH)}
            assert checkpoints.verify_log(session, key).ok  # the old checkpoint, as it was
        for d in range(9):
            with db.write() as session:
                record_event(
                    session,
                    actor_kind="system",
                    actor_id="after",
                    event_type="test.new",
                    deferral_id=f"dfr_new{d}",
                )
        with db.write() as session:
            session.add(checkpoints.signed(key, read_heads(session), utcnow()))
        with db.read() as session:
            result = checkpoints.verify_log(session, key)
            new = session.scalars(select(AuditEvent).where(AuditEvent.seq > 5)).all()
            old = session.scalars(select(AuditEvent).where(AuditEvent.seq <= 5)).all()
        assert result.ok and result.count == 14, result.describe()
        assert {(e.shard, e.shard_seq) for e in old} == {(0, None)}
        assert {e.shard for e in new} == {0, 1, 2}
        first_in_0 = min((e for e in new if e.shard == 0), key=lambda e: e.seq)
        assert (first_in_0.shard_seq, first_in_0.prev_hash) == (6, prev)  # continues the chain
    finally:
        shards.forget_counts()
        db.dispose()


def test_the_epoch_table_refuses_nonsense_counts(four):
    with pytest.raises(ValueError), four.db.write() as session:
        shards.record_epoch(session, 0)
    with four.db.read() as session:
        assert session.scalar(select(AuditEpoch.shards).order_by(AuditEpoch.epoch.desc())) == 4


# --- what shards are for ---------------------------------------------------------------------


def test_a_decision_does_not_wait_for_a_write_holding_another_shard(four, agent):
    """PostgreSQL: a transaction holds one shard's lock; a decision about a deferral in
    another shard commits meanwhile (with one chain it would wait for that lock)."""
    if four.db.is_sqlite:
        pytest.skip("SQLite has one writer whatever the shards")
    holder = reviewer(four)
    ids = [agent.defer().get_json()["id"] for _ in range(8)]
    claimed = set(claim_batch(four, holder))
    by_shard: dict[int, str] = {}
    for d in ids:
        if d in claimed:
            by_shard.setdefault(shard_of(d, 4), d)
    assert len(by_shard) >= 2, by_shard
    (_, held), (_, other) = sorted(by_shard.items())[:2]
    outcome = []
    with chained_write(four.db, deferrals=[held]) as session:
        record_event(session, actor_kind="system", actor_id="t", event_type="x", deferral_id=held)
        worker = threading.Thread(
            target=lambda: outcome.append(decide(four, holder, other, "approve").status)
        )
        worker.start()
        worker.join(120)  # generous: it must not need the held lock at all
        assert outcome == ["approved"]
    assert decide(four, holder, held, "approve").status == "approved"
    with four.db.read() as session:
        assert verify_chain(session).ok

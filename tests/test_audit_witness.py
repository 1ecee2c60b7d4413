"""Audit evidence that survives an insider with database access: every signed checkpoint is
also kept outside the database (the witness file, a witness URL, an auditor's own copy),
and `audit verify` compares the chain with them.

The insider here drops the append-only triggers (tests/helpers.py: as_an_attacker), as
anyone who administers the database can. Each attack is first shown to pass a verify
that trusts only the database, then shown to fail against what was witnessed.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update
from standardwebhooks import Webhook

from review.audit import checkpoints, witness
from review.audit.chain import record_event
from review.audit.hashing import event_hash, payload_json
from review.audit.verify import read_heads
from review.models import AuditCheckpoint, AuditEvent, AuditHead, utcnow
from review.settings import SettingsError
from review.users import create_user
from tests.helpers import Browser, as_an_attacker

ROOT = Path(__file__).resolve().parent.parent
VERIFIER = ROOT / "review" / "audit" / "verifier.py"


def append(svc, n):
    for i in range(n):
        with svc.db.write() as session:
            record_event(
                session,
                actor_kind="system",
                actor_id="test",
                event_type="test.event",
                payload={"i": i},
            )


def verify(runner, *args):
    result = runner.invoke(args=["audit", "verify", *args])
    return result.exit_code, result.output.strip()


def witness_path(svc) -> Path:
    return Path(svc.settings.audit_witness_file)


def verify_without_witness(svc, runner):
    """`audit verify` as it was: trusting only what the database says about itself."""
    path = witness_path(svc)
    hidden = path.with_name("hidden.jsonl")
    path.rename(hidden)
    try:
        return verify(runner)
    finally:
        hidden.rename(path)


def two_witnessed_checkpoints(svc):
    """Events 1-5 checkpointed, 6-8 checkpointed, 9-10 not yet: both checkpoints witnessed."""
    append(svc, 5)
    assert checkpoints.take(svc, force=True).seq == 5
    append(svc, 3)
    assert checkpoints.take(svc, force=True).seq == 8
    append(svc, 2)


def rewrite_from(svc, seq, payload):
    """The insider's edit: event `seq` gets `payload`, every later hash and link is
    recomputed and the head moved to match, so the chain is consistent again."""
    with svc.db.read() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
    statements, prev = [], events[seq - 2].hash if seq > 1 else "0" * 64
    for e in events[seq - 1 :]:
        text = payload_json(payload) if e.seq == seq else e.payload
        new_hash = event_hash(
            seq=e.seq,
            at=e.at,
            actor_kind=e.actor_kind,
            actor_id=e.actor_id,
            event_type=e.event_type,
            agent=e.agent,
            deferral_id=e.deferral_id,
            payload=text,
            prev_hash=prev,
            shard=e.shard,
            shard_seq=e.shard_seq,
        )
        statements.append(
            update(AuditEvent)
            .where(AuditEvent.seq == e.seq)
            .values(payload=text, prev_hash=prev, hash=new_hash)
        )
        prev = new_hash
    assert {e.shard for e in events} == {0}  # these tests' events are all shard 0's
    statements.append(
        update(AuditHead).where(AuditHead.shard == 0).values(seq=events[-1].shard_seq, hash=prev)
    )
    as_an_attacker(svc, *statements)


def forge_checkpoint(svc, key):
    """What an insider holding the signing key can do: sign the (rewritten) head and
    write it into the database and the witness file like the service would."""
    now = utcnow()
    with svc.db.write() as session:
        made = checkpoints.signed(key, read_heads(session), now)
        session.add(made)
    witness.append_line(witness_path(svc), witness.checkpoint_record(made, key))


# --- the witness file ------------------------------------------------------------------


def test_every_checkpoint_is_appended_to_the_witness_file_under_the_instance_folder(svc, runner):
    assert witness_path(svc) == Path(svc.settings.instance_dir) / "audit-witness.jsonl"
    append(svc, 3)
    made = checkpoints.take(svc)  # the worker's timer
    result = runner.invoke(args=["audit", "checkpoint"])
    assert "nothing new" in result.output
    append(svc, 1)
    result = runner.invoke(args=["audit", "checkpoint"])
    assert (
        "4 events" in result.output
        and "witness file" in result.output
        and "appended" in result.output
    )
    lines = [json.loads(line) for line in witness_path(svc).read_text().splitlines()]
    key = checkpoints.load_key(svc.settings.audit_key_file)
    assert [r["seq"] for r in lines] == [3, 4]
    assert lines[0]["hash"] == made.head_hash and lines[0]["signature"] == made.signature
    assert all(r["public_key"] == key.public_b64 and r["key_id"] == key.key_id for r in lines)
    assert oct(witness_path(svc).stat().st_mode)[-3:] == "600"
    code, output = verify(runner)
    assert code == 0 and output.startswith("OK 4 events"), output
    assert "2 witnessed checkpoints agree, the newest at 4" in output


def test_an_insider_who_rewrites_an_event_and_every_later_hash_is_caught(svc, runner):
    two_witnessed_checkpoints(svc)
    rewrite_from(svc, 3, {"i": "forged"})
    as_an_attacker(svc, delete(AuditCheckpoint))  # the checkpoints that would name it go too
    code, output = verify_without_witness(svc, runner)
    assert code == 0 and output.startswith("OK 10 events"), output  # the finding, reproduced
    code, output = verify(runner)
    assert code == 1, output
    assert "BAD event 5: chain disagrees with witnessed head at 5" in output


def test_an_insider_who_cuts_the_tail_and_fixes_the_head_is_caught(svc, runner):
    two_witnessed_checkpoints(svc)
    with svc.db.read() as session:
        fifth = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == 5))
    as_an_attacker(
        svc,
        delete(AuditEvent).where(AuditEvent.seq > 5),
        delete(AuditCheckpoint).where(AuditCheckpoint.seq > 5),
        update(AuditHead).where(AuditHead.shard == 0).values(seq=5, hash=fifth),
    )
    code, output = verify_without_witness(svc, runner)
    assert code == 0 and output.startswith("OK 5 events"), output
    code, output = verify(runner)
    assert code == 1 and "BAD event 6: tail cut: " in output, output
    assert "witnessed a chain of 8 events, the database's ends at 5" in output


def test_an_insider_who_deletes_the_checkpoints_is_caught(svc, runner):
    two_witnessed_checkpoints(svc)
    as_an_attacker(svc, delete(AuditCheckpoint))
    code, output = verify_without_witness(svc, runner)
    assert code == 0, output
    code, output = verify(runner)
    assert code == 1 and "BAD event 5: database lost checkpoint 5" in output, output


def test_an_edited_or_unreadable_witness_file_fails_verify(svc, runner):
    two_witnessed_checkpoints(svc)
    path = witness_path(svc)
    good = path.read_text()
    first = json.loads(good.splitlines()[0])
    path.write_text(json.dumps({**first, "hash": "f" * 64}) + "\n" + good.splitlines()[1] + "\n")
    code, output = verify(runner)
    assert code == 1 and "signature of checkpoint 5 does not hold" in output, output
    path.write_text(good + '{"record":"checkp')
    code, output = verify(runner)
    assert code == 1 and "cannot read the witness file" in output and "not JSON" in output


def test_verify_says_when_the_database_has_checkpoints_but_there_is_no_witness_file(svc, runner):
    append(svc, 2)
    assert verify(runner)[1].startswith("OK 2 events")  # nothing signed yet: nothing to say
    checkpoints.take(svc, force=True)
    witness_path(svc).unlink()  # e.g. checkpoints taken before there was a witness file
    code, output = verify(runner)
    assert code == 0 and output.startswith("OK 2 events")
    assert "no witness file at" in output and "only the database's own checkpoints" in output


# --- the auditor's own copy -------------------------------------------------------------------


def test_an_auditors_copy_catches_an_insider_who_also_holds_the_instance_folder(
    svc, runner, tmp_path
):
    """The insider has the database and instance/ (so the signing key): they rewrite the
    chain, sign it afresh and doctor the witness file. Only a copy kept elsewhere tells."""
    two_witnessed_checkpoints(svc)
    auditors_copy = tmp_path / "auditor.jsonl"
    shutil.copy(witness_path(svc), auditors_copy)
    rewrite_from(svc, 2, {"i": "forged"})
    as_an_attacker(svc, delete(AuditCheckpoint))
    witness_path(svc).unlink()
    forge_checkpoint(svc, checkpoints.load_key(svc.settings.audit_key_file))
    code, output = verify(runner)
    assert code == 0 and output.startswith("OK 10 events"), output  # fooled
    code, output = verify(runner, "--trusted", str(auditors_copy))
    assert code == 1, output
    assert f"chain disagrees with witnessed head at 5 ({auditors_copy} line 1)" in output


def test_an_auditors_copy_catches_a_replaced_signing_key(svc, runner, tmp_path):
    two_witnessed_checkpoints(svc)
    auditors_copy = tmp_path / "auditor.jsonl"
    shutil.copy(witness_path(svc), auditors_copy)
    rewrite_from(svc, 2, {"i": "forged"})
    as_an_attacker(svc, delete(AuditCheckpoint))
    witness_path(svc).unlink()
    Path(svc.settings.audit_key_file).unlink()
    forge_checkpoint(svc, checkpoints.load_key(svc.settings.audit_key_file))  # a new key
    code, output = verify(runner)
    assert code == 0, output
    code, output = verify(runner, "--trusted", str(auditors_copy))
    assert code == 1 and "checkpoint 5 was signed by another key" in output, output


def run_verifier(path, *args):
    out = subprocess.run(
        [sys.executable, str(VERIFIER), str(path), *args], capture_output=True, text=True
    )
    return out.returncode, out.stdout.strip()


def test_the_offline_verifier_checks_an_export_against_trusted_copies(svc, runner, tmp_path):
    two_witnessed_checkpoints(svc)
    key = checkpoints.load_key(svc.settings.audit_key_file).public_b64
    auditors_copy = tmp_path / "auditor.jsonl"
    shutil.copy(witness_path(svc), auditors_copy)
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_text(runner.invoke(args=["audit", "export"]).output)
    code, output = run_verifier(earlier, "--public-key", key, "--trusted", str(auditors_copy))
    assert code == 0 and output.endswith("2 trusted checkpoints agree"), output

    rewrite_from(svc, 2, {"i": "forged"})
    as_an_attacker(svc, delete(AuditCheckpoint))
    forge_checkpoint(svc, checkpoints.load_key(svc.settings.audit_key_file))
    doctored = tmp_path / "doctored.jsonl"
    doctored.write_text(runner.invoke(args=["audit", "export"]).output)
    code, output = run_verifier(doctored, "--public-key", key)
    assert code == 0, output  # consistent, and signed by the real key
    for trusted in (auditors_copy, earlier):  # a witness copy, or an export kept earlier
        code, output = run_verifier(doctored, "--public-key", key, "--trusted", str(trusted))
        assert code == 1 and "chain disagrees with witnessed head at 5" in output, output
    broken = tmp_path / "broken.jsonl"
    broken.write_text("not json\n")
    code, output = run_verifier(doctored, "--trusted", str(broken))
    assert code == 1 and "BAD trusted file" in output


# --- the witness URL ------------------------------------------------------------------------


def secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def test_the_witness_url_gets_each_checkpoint_as_a_signed_webhook_and_missed_ones_later(
    make_app, receiver_factory
):
    receiver = receiver_factory((500, {}, 0), (200, {}, 0))
    shared = secret()
    app = make_app(
        audit_witness_url=receiver.url, audit_witness_secret=shared, allow_private_callbacks=True
    )
    svc = app.extensions["countersign"]
    append(svc, 2)
    first = checkpoints.take(svc, force=True)
    assert first is not None and len(receiver.requests) == 1  # answered 500: not acknowledged
    append(svc, 1)
    second = checkpoints.take(svc, force=True)  # the chain went on regardless
    assert len(receiver.requests) == 3  # the missed one again, then the new one
    key = checkpoints.load_key(svc.settings.audit_key_file)
    got = []
    for headers, body, path in receiver.requests:
        payload = Webhook(shared).verify(body, headers)  # the receiver's own library
        assert path == "/hooks" and payload["type"] == "audit.checkpoint"
        data = payload["data"]
        assert data["public_key"] == key.public_b64
        got.append((headers["webhook-id"], data["seq"], data["signature"]))
    assert [seq for _id, seq, _sig in got] == [2, 2, 3]
    assert got[0][0] == got[1][0] != got[2][0]  # a retry carries the same webhook-id
    assert got[1][2] == first.signature and got[2][2] == second.signature
    with svc.db.read() as session:
        assert [c.seq for c in checkpoints.all_checkpoints(session)] == [2, 3]


def test_a_refused_witness_url_never_blocks_the_chain(make_app):
    app = make_app(audit_witness_url="http://127.0.0.1:9/witness", audit_witness_secret=secret())
    svc = app.extensions["countersign"]
    append(svc, 2)
    result = app.test_cli_runner().invoke(args=["audit", "checkpoint"])
    assert result.exit_code == 0 and "2 events" in result.output
    assert "NOT delivered (refused" in result.output and "non-public address" in result.output
    assert len(witness_path(svc).read_text().splitlines()) == 1


def test_a_witness_url_needs_a_secret(make_app):
    with pytest.raises(SettingsError, match="COUNTERSIGN_AUDIT_WITNESS_SECRET"):
        make_app(audit_witness_url="https://witness.example/hook")


# --- the key, read once ------------------------------------------------------------------------

_opens = {"path": None, "count": 0, "hooked": False}


def _count_opens(event, args):
    if event == "open" and _opens["path"] and args and str(args[0]) == _opens["path"]:
        _opens["count"] += 1


def test_the_audit_page_does_not_read_the_key_file_on_every_request(app, svc):
    with svc.db.write() as session:
        create_user(session, "audrey", "auditor", "correct horse battery")
    auditor = Browser(app.test_client(), "audrey")
    append(svc, 2)
    if not _opens["hooked"]:  # audit hooks cannot be removed; this one counts only when asked
        sys.addaudithook(_count_opens)
        _opens["hooked"] = True
    _opens.update(path=svc.settings.audit_key_file, count=0)
    try:
        first = auditor.get("/audit")
        after_first = _opens["count"]
        for _ in range(4):
            assert auditor.get("/audit").status_code == 200
        assert auditor.get("/audit/export.jsonl").status_code == 200
    finally:
        _opens["path"] = None
    key = checkpoints.load_key(svc.settings.audit_key_file)
    assert first.status_code == 200 and key.public_b64 in first.get_data(as_text=True)
    assert _opens["count"] == after_first <= 2  # read (perhaps made) once, then never again

"""The audit log as evidence: append-only at the database, signed checkpoints that catch a
cut tail, exports an auditor verifies offline, redaction, and /audit."""

import ast
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

from review.audit import checkpoints
from review.audit import export as audit_export
from review.audit.hashing import canonical_json, heads_root
from review.audit.verifier import canonical
from review.audit.verify import log_head
from review.models import AuditCheckpoint, AuditEvent, AuditHead, utcnow
from review.users import create_user
from tests.helpers import ROOT, Browser, append_events, approved, as_an_attacker, refund, reviewer

VERIFIER = ROOT / "review" / "audit" / "verifier.py"


def verify(runner):
    result = runner.invoke(args=["audit", "verify"])
    return result.exit_code, result.output.strip()


# --- append-only at the database ----------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        update(AuditEvent).values(actor_id="mallory"),
        delete(AuditEvent),
        update(AuditCheckpoint).values(seq=1),
        delete(AuditCheckpoint),
    ],
    ids=["update event", "delete event", "update checkpoint", "delete checkpoint"],
)
def test_the_database_refuses_to_change_the_log(svc, statement):
    append_events(svc, 2)
    checkpoints.take(svc, force=True)
    with pytest.raises(DBAPIError, match="append-only"), svc.db.write() as session:
        session.execute(statement)
    with svc.db.read() as session:
        assert session.scalar(select(AuditEvent.actor_id).where(AuditEvent.seq == 1)) == "test"


def test_postgresql_refuses_truncate_too(svc):
    if svc.db.is_sqlite:
        pytest.skip("SQLite has no TRUNCATE")
    append_events(svc, 1)
    with pytest.raises(DBAPIError, match="append-only"), svc.db.write() as session:
        session.execute(text("TRUNCATE audit_events CASCADE"))


# --- checkpoints ----------------------------------------------------------------------


def test_a_checkpoint_signs_the_head_and_verify_checks_it(svc, runner):
    append_events(svc, 3)
    result = runner.invoke(args=["audit", "checkpoint"])
    assert result.exit_code == 0 and "3 events" in result.output
    again = runner.invoke(args=["audit", "checkpoint"])
    assert "nothing new" in again.output
    code, output = verify(runner)
    assert code == 0 and output.startswith("OK 3 events")
    key = checkpoints.load_key(svc.settings.audit_key_file)
    with svc.db.read() as session:
        [c] = checkpoints.all_checkpoints(session)
    assert checkpoints.signature_valid(key.public_raw, c)
    with svc.db.read() as session:
        head = log_head(session)
    listed = json.loads(c.heads)  # every shard's head; the signed hash is their root
    assert [h[:2] for h in listed] == [[0, 3]] + [[s, 0] for s in range(1, head.shards)]
    assert (c.seq, c.head_hash) == (3, heads_root([tuple(h) for h in listed]))
    assert oct(Path(svc.settings.audit_key_file).stat().st_mode)[-3:] == "600"


def test_the_timer_takes_a_checkpoint_only_when_due_and_new(make_app):
    app = make_app(checkpoint_interval=60)
    svc = app.extensions["countersign"]
    append_events(svc, 1)
    assert checkpoints.take(svc) is not None  # the first one at once
    append_events(svc, 1)
    assert checkpoints.take(svc) is None  # not due yet
    assert checkpoints.take(svc, now=utcnow() + timedelta(seconds=61)) is not None
    assert checkpoints.take(svc, now=utcnow() + timedelta(seconds=200)) is None  # nothing new


def test_a_cut_tail_with_a_rewritten_head_is_caught_by_the_checkpoint(svc, runner):
    append_events(svc, 5)
    checkpoints.take(svc, force=True)
    with svc.db.read() as session:
        third = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == 3))
    as_an_attacker(svc, delete(AuditEvent).where(AuditEvent.seq > 3))
    with svc.db.write() as session:  # and makes the head agree
        session.execute(update(AuditHead).where(AuditHead.shard == 0).values(seq=3, hash=third))
    code, output = verify(runner)
    assert code == 1 and "event 4" in output and "events removed from the end" in output


def test_a_forged_checkpoint_is_caught(svc, runner):
    append_events(svc, 3)
    checkpoints.take(svc, force=True)
    as_an_attacker(svc, update(AuditCheckpoint).values(head_hash="f" * 64))
    code, output = verify(runner)
    assert code == 1 and "bad signature" in output


def test_a_rewritten_log_does_not_match_its_checkpoint(svc, runner):
    """Someone rebuilds a valid-looking chain from event 2 on; the signed hash differs."""
    append_events(svc, 3)
    checkpoints.take(svc, force=True)
    with svc.db.read() as session:
        first = session.scalar(select(AuditEvent).where(AuditEvent.seq == 1))
        first_hash = first.hash
    as_an_attacker(svc, delete(AuditEvent).where(AuditEvent.seq > 1))
    with svc.db.write() as session:
        session.execute(
            update(AuditHead).where(AuditHead.shard == 0).values(seq=1, hash=first_hash)
        )
    append_events(svc, 2, kind="forged")
    code, output = verify(runner)
    assert code == 1 and "event 3" in output and "rewritten" in output


def test_reordered_events_are_caught(svc, runner):
    append_events(svc, 4)
    with svc.db.read() as session:
        rows = {e.seq: e for e in session.scalars(select(AuditEvent))}
    swap = [
        update(AuditEvent).where(AuditEvent.seq == 2).values(seq=-2),
        update(AuditEvent).where(AuditEvent.seq == 3).values(seq=2),
        update(AuditEvent).where(AuditEvent.seq == -2).values(seq=3),
    ]
    as_an_attacker(svc, *swap)
    code, output = verify(runner)
    assert code == 1 and "event 2" in output and rows[2].hash != rows[3].hash


# --- export and the offline verifier ----------------------------------------------------


def export(runner, fmt):
    result = runner.invoke(args=["audit", "export", "--format", fmt])
    assert result.exit_code == 0, result.output
    return result.output


def run_verifier(path, *args):
    out = subprocess.run(
        [sys.executable, str(VERIFIER), str(path), *args], capture_output=True, text=True
    )
    return out.returncode, out.stdout.strip()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_export_round_trips_through_the_standalone_verifier(svc, agent, runner, tmp_path, fmt):
    d = approved(svc, agent, reviewer(svc), refund(rationale='line one\nline "two", ünïcode ✓'))
    agent.post_json(
        f"/api/v1/deferrals/{d['id']}/execution",
        {"outcome": "succeeded", "action_digest": d["action_digest"], "result": {"ok": True}},
    )
    checkpoints.take(svc, force=True)
    append_events(svc, 2)  # events after the last checkpoint are exported too
    path = tmp_path / f"log.{fmt}"
    path.write_text(export(runner, fmt), encoding="utf-8")
    key = checkpoints.load_key(svc.settings.audit_key_file)
    code, output = run_verifier(path, "--public-key", key.public_b64)
    with svc.db.read() as session:
        count = log_head(session).events
    assert code == 0, output
    assert (
        output.startswith(f"OK {count} events")
        and "1 checkpoints signed by the given key" in output
    )


def test_the_verifier_catches_an_edited_a_removed_and_a_cut_export(svc, agent, runner, tmp_path):
    agent.defer()
    checkpoints.take(svc, force=True)
    lines = export(runner, "jsonl").splitlines(keepends=True)
    key = checkpoints.load_key(svc.settings.audit_key_file).public_b64
    n = next(i for i, line in enumerate(lines) if "deferral.received" in line)
    event = json.loads(lines[n])
    event["payload"] = event["payload"].replace("Refund", "Refnd")
    cases = {
        "edited": [*lines[:n], json.dumps(event) + "\n", *lines[n + 1 :]],
        "removed": [*lines[:n], *lines[n + 1 :]],
        "cut": lines[:-1],
    }
    expected = {"edited": "edited", "removed": "missing", "cut": "cut off"}
    for name, content in cases.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(content), encoding="utf-8")
        code, output = run_verifier(path, "--public-key", key)
        assert code == 1 and expected[name] in output, (name, output)
    other = checkpoints.load_key(tmp_path / "other.pem").public_b64
    good = tmp_path / "good.jsonl"
    good.write_text("".join(lines), encoding="utf-8")
    code, output = run_verifier(good, "--public-key", other)
    assert code == 1 and "another key" in output


def test_the_verifier_needs_only_the_standard_library_and_cryptography():
    tree = ast.parse(VERIFIER.read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.add((node.module or "").split(".")[0])
    assert modules - set(sys.stdlib_module_names) == {"cryptography"}


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["seq", "at", "actor_id", "agent", "payload_sha256", "prev_hash"]),
        st.one_of(st.none(), st.integers(-(2**53) + 1, 2**53 - 1), st.text()),
    )
)
def test_the_verifiers_canonical_json_is_rfc_8785_for_the_hashed_records(record):
    assert canonical(record) == canonical_json(record)


def test_export_streams_in_pages(svc, monkeypatch):
    append_events(svc, 12)
    seen = []
    real = audit_export.iter_rows

    def spy(session, batch=5000, after=0):
        seen.append(batch)
        return real(session, batch=5, after=after)

    monkeypatch.setattr(audit_export, "iter_rows", spy)
    key = checkpoints.load_key(svc.settings.audit_key_file)
    with svc.db.read() as session:
        records = list(audit_export.records(session, key))
    assert [r["seq"] for r in records if r["record"] == "event"] == list(range(1, 13))
    end = records[-1]
    assert {k: end[k] for k in ("record", "events", "checkpoints")} == {
        "record": "end",
        "events": 12,
        "checkpoints": 0,
    }
    assert end["heads"][0][:2] == [0, 12]  # every shard's head; these events are shard 0's


# --- redaction ----------------------------------------------------------------------------


def test_redacted_values_never_reach_the_audit_table_or_the_export(make_app, make_agent, runner):
    app = make_app(audit_redact="action.args.card_number,**.cvv,result.token", agent_rate=0)
    svc = app.extensions["countersign"]
    agent = make_agent().on(app)
    body = refund(
        action={"tool": "billing.charge", "args": {"card_number": "4111111111111111", "amount": 5}},
        before={"card": {"cvv": "737Z"}},
        after={"card": {"cvv": "737Z", "charged": True}},
    )
    d = approved(svc, agent, reviewer(svc), body)
    agent.post_json(
        f"/api/v1/deferrals/{d['id']}/execution",
        {
            "outcome": "succeeded",
            "action_digest": d["action_digest"],
            "result": {"token": "tok_SECRET"},
        },
    )
    with svc.db.read() as session:
        stored = " ".join(session.scalars(select(AuditEvent.payload)).all())
    exported = app.test_cli_runner().invoke(args=["audit", "export"]).output
    for raw in ("4111111111111111", "737Z", "tok_SECRET"):
        assert raw not in stored and raw not in exported
    received = json.loads(
        next(line for line in exported.splitlines() if '"event_type":"deferral.received"' in line)
    )
    payload = json.loads(received["payload"])
    assert payload["action"]["args"]["card_number"] == svc.redactor.digest("4111111111111111")
    assert payload["action"]["args"]["amount"] == 5  # only the configured paths
    assert payload["state"]["before"]["card"]["cvv"].startswith("redacted:hmac-sha256:")
    # reviewers still see the value they decide on
    page = Browser(app.test_client(), "rita").get(f"/deferrals/{d['id']}").get_data(as_text=True)
    assert "4111111111111111" in page


def test_redaction_paths_match_keys_indexes_and_any_depth(svc):
    from review.audit.redaction import Redactor

    r = Redactor("k", ("action.args.items.*.pan", "**.password"))
    out = r.apply(
        "action",
        {"args": {"items": [{"pan": "1"}, {"pan": "2", "x": 1}], "user": {"password": "p"}}},
    )
    assert out["args"]["items"][0]["pan"] == r.digest("1")
    assert out["args"]["items"][1] == {"pan": r.digest("2"), "x": 1}
    assert out["args"]["user"]["password"] == r.digest("p")
    assert r.apply("before", {"password": "p"}) == {"password": r.digest("p")}
    assert r.apply("before", {"other": "p"}) == {"other": "p"}


# --- the /audit page --------------------------------------------------------------------


@pytest.fixture
def auditor(app, svc):
    with svc.db.write() as session:
        create_user(session, "audrey", "auditor", "correct horse battery")
    return Browser(app.test_client(), "audrey")


def test_the_audit_page_filters_and_pages_by_sequence(app, svc, agent, auditor, monkeypatch):
    monkeypatch.setattr("review.web.audit_pages.PAGE", 3)
    ids = [agent.defer(refund(summary=f"n{i}")).get_json()["id"] for i in range(3)]
    page = auditor.get("/audit").get_data(as_text=True)
    key = checkpoints.load_key(svc.settings.audit_key_file)
    assert key.public_b64 in page and "Export JSONL" in page and "Older events" in page
    only = auditor.get(f"/audit?deferral={ids[1]}").get_data(as_text=True)
    assert ids[1] in only and ids[0] not in only
    typed = auditor.get("/audit?type=deferral.evaluated").get_data(as_text=True)
    assert typed.count("<strong>deferral.evaluated</strong>") == 3
    older = auditor.get("/audit?type=deferral.received&before=999999").get_data(as_text=True)
    assert older.count("<strong>deferral.received</strong>") == 3
    by_actor = auditor.get(f"/audit?actor=agent:{agent.slug}&type=agent.created")
    assert "No events match" in by_actor.get_data(as_text=True)
    future = auditor.get("/audit?since=2999-01-01T00:00").get_data(as_text=True)
    assert "No events match" in future


def test_the_audit_page_is_for_auditors_and_admins(app, svc, agent, auditor):
    with svc.db.write() as session:
        create_user(session, "rita", "reviewer", "correct horse battery")
    assert Browser(app.test_client(), "rita").get("/audit").status_code == 403
    assert Browser(app.test_client(), "rita").get("/audit/export.jsonl").status_code == 403


def test_the_page_exports_what_the_cli_exports(app, svc, agent, auditor, tmp_path):
    agent.defer()
    response = auditor.get("/audit/export.csv")
    assert response.status_code == 200 and "attachment" in response.headers["Content-Disposition"]
    path = tmp_path / "page.csv"
    path.write_bytes(response.get_data())
    key = checkpoints.load_key(svc.settings.audit_key_file)
    code, output = run_verifier(path, "--public-key", key.public_b64)
    assert code == 0, output


def test_one_deferrals_evidence_reads_as_one_chain(app, svc, agent, auditor):
    d = approved(svc, agent, reviewer(svc))
    agent.post_json(
        f"/api/v1/deferrals/{d['id']}/execution",
        {"outcome": "failed", "action_digest": d["action_digest"]},
    )
    page = auditor.get(f"/audit/deferrals/{d['id']}").get_data(as_text=True)
    stages = ("Intent", "Decision", "Evaluation", "Approval", "Execution", "Response")
    at = [page.index(f">{stage}</h2>") for stage in stages]
    assert at == sorted(at)  # in this order (PROTOCOL.md section 17)
    assert "On behalf of <strong>alice@example.com</strong>" in page
    assert "approved by rita" in page and "reported <strong>failed</strong>" in page
    assert "every event&#39;s hash checks" in page or "every event's hash checks" in page

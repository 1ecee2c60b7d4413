"""Pages cost what they show: /agents issues the same statements for two agents as for
eight, /audit and the evidence page never scan the whole log, and the queue's 10-second
refresh reads only what its partial renders. Statements are counted on the engine."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, func, select, update

from review import redis_keys
from review.agents import killswitch
from review.agents.killswitch import Actor
from review.agents.overview import agent_rows
from review.audit.event_types import EVENT_TYPES
from review.audit.verify import log_head
from review.callbacks import deliveries
from review.models import Agent, AuditEvent, Deferral, OutboxEvent, utcnow
from review.reviewing.claims import claim_batch, release_batch
from review.reviewing.decisions import decide
from review.reviewing.expiry import expire_due
from review.users import create_user
from tests.helpers import Browser, csrf_token, refund, reviewer

ROOT = Path(__file__).resolve().parent.parent
ADMIN = Actor("user", "ada")


@contextmanager
def statements(svc) -> Iterator[list[str]]:
    """Every SQL statement sent to the database while the block runs."""
    seen: list[str] = []

    def note(_conn, _cursor, statement, _parameters, _context, _executemany):
        seen.append(statement)

    event.listen(svc.db.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(svc.db.engine, "before_cursor_execute", note)


@contextmanager
def driver_statements(svc) -> Iterator[list[str]]:
    """Every SQL statement the block sends straight on the driver, round the engine's
    events (Database._driver_cursor: one-row reads, review/driver_statements.py)."""
    seen: list[str] = []
    send = svc.db._driver_cursor

    def note(dbapi_connection, sql, params):
        seen.append(sql)
        return send(dbapi_connection, sql, params)

    svc.db._driver_cursor = note
    try:
        yield seen
    finally:
        del svc.db._driver_cursor


def get_counting(svc, browser: Browser, path: str, **kwargs) -> tuple[str, list[str]]:
    with statements(svc) as seen:
        response = browser.get(path, **kwargs)
    assert response.status_code == 200
    return response.get_data(as_text=True), list(seen)


@pytest.fixture
def ada(app, svc) -> Browser:
    with svc.db.write() as session:
        create_user(session, "ada", "admin", "correct horse battery")
    return Browser(app.test_client(), "ada")


# --- /agents --------------------------------------------------------------------------


def busy_agents(svc, make_agent, slugs: list[str]) -> None:
    """Agents with deferrals, a callback URL, callbacks waiting and one dead letter each."""
    for slug in slugs:
        client = make_agent(
            slug,
            owner=f"owner-{slug}",
            callback_url="http://127.0.0.1:9/hook",
            allow_private_callbacks=True,
        )
        for _ in range(2):
            assert client.defer().status_code == 202
        killswitch.kill(svc, slug, ADMIN, "drill")  # two deferral.decided, one agent.killed
        with svc.db.write() as session:
            first = session.scalars(
                select(OutboxEvent.id)
                .join(Agent, Agent.id == OutboxEvent.agent_id)
                .where(Agent.slug == slug, OutboxEvent.deferral_id.is_not(None))
                .limit(1)
            ).one()
            session.execute(
                update(OutboxEvent).where(OutboxEvent.id == first).values(status="dead")
            )


def test_it_renders_agents_in_as_many_statements_for_eight_agents_as_for_two(svc, make_agent, ada):
    busy_agents(svc, make_agent, ["agent-0", "agent-1"])
    two_page, two = get_counting(svc, ada, "/agents")
    busy_agents(svc, make_agent, [f"agent-{i}" for i in range(2, 8)])
    eight_page, eight = get_counting(svc, ada, "/agents")
    assert len(eight) == len(two), "\n".join(eight)
    assert two_page.count("1 dead callback, 2 callbacks waiting") == 2
    assert eight_page.count("1 dead callback, 2 callbacks waiting") == 8
    assert eight_page.count("last deferral ") == 8 and "owner-agent-7" in eight_page


def test_it_shows_each_agent_the_figures_its_own_reads_give(svc, make_agent, ada):
    busy_agents(svc, make_agent, ["busy"])
    make_agent("quiet", owner="olivia")
    polled = make_agent("polled", owner="olivia")
    polled.defer()
    killswitch.deactivate(svc, "polled", ADMIN, "retired")
    with svc.db.read() as session:
        rows = agent_rows(session)
        assert [r.agent.slug for r in rows] == ["busy", "polled", "quiet"]
        for row in rows:
            health = deliveries.health(session, row.agent.id)
            last = session.scalar(
                select(func.max(Deferral.created_at)).where(Deferral.agent_id == row.agent.id)
            )
            assert (row.backlog.pending, row.backlog.dead) == (health.pending, health.dead)
            assert row.last_deferral_at == last
    assert [(r.backlog.pending, r.backlog.dead) for r in rows] == [(2, 1), (0, 0), (0, 0)]
    assert rows[0].last_deferral_at is not None and rows[2].last_deferral_at is None
    page = ada.get("/agents").get_data(as_text=True)
    assert "1 dead callback, 2 callbacks waiting" in page
    assert "deactivated" in page and "no callback URL" in page


# --- /audit and the evidence page -----------------------------------------------------------


def test_it_offers_the_known_event_types_without_scanning_the_log(svc, agent, ada):
    agent.defer()
    page, seen = get_counting(svc, ada, "/audit")
    scans = [s for s in seen if "audit_events" in s and "GROUP BY" in s.upper()]
    assert not scans, scans
    for event_type in EVENT_TYPES:
        assert f'<option value="{event_type}" >' in page
    asked = ada.get("/audit?type=made.up").get_data(as_text=True)
    assert '<option value="made.up" selected>' in asked and "No events match" in asked


def test_it_tells_the_evidence_pages_log_size_from_the_head(app, svc, agent, ada):
    d_id = agent.defer().get_json()["id"]
    with svc.db.read() as session:
        events = session.scalar(select(func.count()).select_from(AuditEvent))
        assert log_head(session).events == events  # the shards' heads, summed
    page, seen = get_counting(svc, ada, f"/audit/deferrals/{d_id}")
    counts = [s for s in seen if "audit_events" in s and "count(" in s.lower()]
    assert not counts, counts
    assert f"the whole log, {events} events" in page


DOTTED = re.compile(r"[a-z_]+\.[a-z_0-9]+")
# review/audit/repeats.py: a Kind's first field is the type of its summary event.
WRITERS = {"Kind": {0}}
NOT_AUDIT = {"OutboxEvent"}


def _called(call: ast.Call) -> str:
    func_ = call.func
    return func_.attr if isinstance(func_, ast.Attribute) else getattr(func_, "id", "")


def _typed(node: ast.AST) -> list[ast.expr]:
    """The expressions a node writes as an event type: `event_type=x`, `{"event_type": x}`
    (an OutboxEvent's event_type is a callback's type, not an audit event's)."""
    if isinstance(node, ast.Call) and _called(node) not in NOT_AUDIT:
        return [k.value for k in node.keywords if k.arg == "event_type"]
    if isinstance(node, ast.Dict):
        return [
            v
            for k, v in zip(node.keys, node.values, strict=True)
            if isinstance(k, ast.Constant) and k.value == "event_type"
        ]
    return []


def _given(call: ast.Call, writers: dict[str, set[int | str]]) -> list[ast.expr]:
    """The arguments of a call that its function writes as an event type."""
    slots = writers.get(_called(call), set())
    return [a for i, a in enumerate(call.args) if i in slots] + [
        k.value for k in call.keywords if k.arg in slots
    ]


def _writers(tree: ast.Module) -> dict[str, set[int | str]]:
    """This module's functions that write a parameter as an event type, directly or by
    handing it to another such function (`_audit_login(svc, "login.failed", ...)`)."""
    writers: dict[str, set[int | str]] = {name: set(slots) for name, slots in WRITERS.items()}
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    changed = True
    while changed:
        changed = False
        for function in functions:
            params = [a.arg for a in function.args.posonlyargs + function.args.args]
            params += [a.arg for a in function.args.kwonlyargs]
            written = set()
            for node in ast.walk(function):
                given = _typed(node) + (_given(node, writers) if isinstance(node, ast.Call) else [])
                written |= {e.id for e in given if isinstance(e, ast.Name) and e.id in params}
            slots = {i for i, p in enumerate(params) if p in written} | written
            if not slots <= writers.get(function.name, set()):
                writers[function.name] = writers.get(function.name, set()) | slots
                changed = True
    return writers


def types_written_in_source() -> set[str]:
    """Literal event types in review/ and queue/: given as `event_type=`, as
    `"event_type":`, or as the argument of a function that writes it as one."""
    found = set()
    for path in [*ROOT.glob("review/**/*.py"), *ROOT.glob("queue/**/*.py")]:
        tree = ast.parse(path.read_text())
        constants = {
            target.id: node.value.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        writers = _writers(tree)
        for node in ast.walk(tree):
            given = _typed(node) + (_given(node, writers) if isinstance(node, ast.Call) else [])
            for value in given:
                if isinstance(value, ast.Name):
                    text = constants.get(value.id)
                else:
                    text = value.value if isinstance(value, ast.Constant) else None
                if isinstance(text, str) and DOTTED.fullmatch(text):
                    found.add(text)
    return found


def test_it_lists_every_event_type_the_code_writes():
    written = types_written_in_source()
    assert {
        "deferral.claimed",  # claims._event(..., kind, ...) writes "event_type": kind
        "agents.stop_all",  # _flip_all hands it to killswitch._event
        "login.failed",
        "execution.violation",  # a module constant
    } <= written
    # Callback types name outbox rows (what an agent is sent), never audit events.
    callback_only = {"deferral.decided", "request.resolved"}
    assert written - set(EVENT_TYPES) - callback_only == set()


def test_it_lists_every_event_type_the_flows_write(app, svc, make_agent, ada):
    rita = reviewer(svc)
    client = app.test_client()
    form = csrf_token(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"username": "ada", "password": "wrong", "csrf_token": form})
    agent = make_agent()
    ids = [agent.defer(refund(summary=f"n{i}")).get_json()["id"] for i in range(4)]
    assert agent.defer(b"{}").status_code == 422
    claim_batch(svc, rita)
    release_batch(svc, rita)
    claim_batch(svc, rita)
    assert decide(svc, rita, ids[0], "approve").status == "approved"
    assert decide(svc, rita, ids[1], "reject", "no").status == "rejected"
    release_batch(svc, rita)
    expire_due(svc, utcnow() + timedelta(days=30))
    digest = agent.get(f"/api/v1/deferrals/{ids[0]}").get_json()["action_digest"]
    execution = {"outcome": "succeeded", "action_digest": digest}
    assert agent.post_json(f"/api/v1/deferrals/{ids[0]}/execution", execution).status_code == 201
    assert agent.post_json(f"/api/v1/deferrals/{ids[0]}/execution", execution).status_code == 409
    with pytest.raises(killswitch.NotAllowed):
        killswitch.authorise(svc, agent.slug, "rita", "kill")
    agent.defer()
    killswitch.kill(svc, agent.slug, ADMIN, "drill")
    killswitch.revive(svc, agent.slug, ADMIN, "fixed")
    killswitch.stop_all(svc, ADMIN, "incident")
    killswitch.revive_all(svc, ADMIN, "over")
    killswitch.deactivate(svc, agent.slug, ADMIN, "retired")
    with svc.db.read() as session:
        written = set(session.scalars(select(AuditEvent.event_type).distinct()))
    assert len(written) >= 20, written
    assert written - set(EVENT_TYPES) == set()


# --- the queue's refresh ------------------------------------------------------------------

AGENT_LIST = re.compile(r"FROM agents\s+ORDER BY agents\.slug")


def test_it_refreshes_the_queue_reading_only_what_the_partial_shows(app, svc, make_agent):
    holder = reviewer(svc)
    for slug in ("alpha", "beta"):
        agent = make_agent(slug)
        for i in range(4):
            agent.defer(refund(summary=f"{slug} {i}"))
    claim_batch(svc, holder)  # the full page offers to continue the batch
    rita = Browser(app.test_client(), "rita")
    counts = svc.redis.client()
    counts.delete(redis_keys.QUEUE_LEVEL_COUNTS)
    full, on_full = get_counting(svc, rita, "/queue")
    counts.delete(redis_keys.QUEUE_LEVEL_COUNTS)
    partial, on_refresh = get_counting(svc, rita, "/queue", headers={"HX-Request": "true"})
    assert "Continue your batch (" in full and '<option value="beta"' in full
    assert 'id="queue-body"' in partial and "Continue your batch" not in partial
    assert partial.count("<tr>") == full.count("<tr>")
    assert any(AGENT_LIST.search(s) for s in on_full)
    assert not any(AGENT_LIST.search(s) for s in on_refresh), on_refresh
    assert not any("claimed_by" in s for s in on_refresh), on_refresh
    assert len(on_refresh) < len(on_full)


# --- a batch ----------------------------------------------------------------------------


def asked_again(svc, agent, holder, n: int) -> list[str]:
    """`n` deferrals, each an action `holder` rejected once before (so each card has an
    earlier decision to show), all pending."""
    bodies = [
        refund(action={"tool": "billing.refund", "args": {"invoice": f"INV-{n}-{i}"}})
        for i in range(n)
    ]
    firsts = [agent.defer(body).get_json()["id"] for body in bodies]
    claim_batch(svc, holder)
    for first in firsts:
        assert decide(svc, holder, first, "reject", "not yet").status == "rejected"
    again = [agent.defer(body).get_json()["id"] for body in bodies]
    return again


def test_it_starts_a_batch_of_five_in_as_many_statements_as_a_batch_of_one(app, svc, agent, people):
    sam = reviewer(svc, "sam-domain")
    rita = Browser(app.test_client(), "rita")
    sizes = {}
    for n in (1, 5):
        ids = asked_again(svc, agent, sam, n)
        with statements(svc) as seen:
            started = rita.post("/batch/start", {"answer": "page"})  # as review.js sends it
        page = started.get_data(as_text=True)
        assert started.status_code == 200  # the batch page itself: no second request
        assert all(f'id="card-{d_id}"' in page for d_id in ids)
        assert page.count("Earlier decisions") == n and page.count("not yet") == n
        sizes[n] = len(seen)
        # Claimed afresh: nothing it holds can have a decision held for undo (test_undo.py
        # has a batch topped up around a held one).
        assert not any(s.startswith("SELECT pending_decisions.") for s in seen), seen
        for d_id in ids:
            rita.post(f"/batch/{d_id}/approve", {"seen_ms": "9000"}, htmx=True)
    assert sizes[5] == sizes[1], sizes


def _shown_when_held(fragment: str) -> list[str]:
    """What a held card shows in a batch (its body and More are folded away: app.css),
    the countdown's figures and the CSRF token's signature aside: the card's head, its
    decision bar, the batch's count."""
    parts = [
        re.search(r"<article [^>]*>", fragment, re.S).group(0),
        re.search(r'<header class="card-head">.*?</header>', fragment, re.S).group(0),
        re.search(r'<div class="undo-bar".*?</div>', fragment, re.S).group(0),
        re.search(r'<span id="batch-left".*?</span>', fragment, re.S).group(0),
    ]
    # The CSRF token is signed with the second it was made in: two renders may differ.
    parts = [re.sub(r'name="csrf_token" value="[^"]*"', 'name="csrf_token"', p) for p in parts]
    return [re.sub(r"\d+ms\b|-ms=\"\d+\"|\(\d\)|\s+", " ", p).replace(" >", ">") for p in parts]


def test_a_held_decision_answers_with_its_card_without_reading_it_again(
    make_app, make_agent, people
):
    app = make_app(undo_seconds=5, min_read_seconds=0)
    svc = app.extensions["countersign"]
    agent = make_agent().on(app)
    ids = [agent.defer(refund(summary=f"Refund {i}")).get_json()["id"] for i in range(2)]
    rita = Browser(app.test_client(), "rita")
    assert rita.post("/batch/start", {"answer": "page"}).status_code == 200
    with statements(svc) as seen, driver_statements(svc) as on_the_driver:
        answer = rita.post(f"/batch/{ids[0]}/approve", {"seen_ms": "9000"}, htmx=True)
    fragment = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert "Approved: Undo (key u) until it takes effect." in fragment
    assert 'aria-keyshortcuts="u"' in fragment and 'role="status"' in fragment
    # The prepared hold: one read of the deferral, the one its checks read before the
    # write, on the driver (Database.first_row_unpinged), as is the session's user
    # (review/web/auth.py); the hold's statements, under SQLite's lock or PostgreSQL's one
    # call, go round the engine's events too. The card is built from that read.
    deferral_reads = [sql for sql in seen + on_the_driver if "FROM deferrals " in sql]
    assert len(deferral_reads) == 1 and deferral_reads[0].lstrip().startswith("SELECT")
    # As the card shows when read afresh (what a reload of the card gives in the window).
    afresh = rita.get(f"/batch/{ids[0]}/card", headers={"HX-Request": "true"})
    assert _shown_when_held(fragment) == _shown_when_held(afresh.get_data(as_text=True))

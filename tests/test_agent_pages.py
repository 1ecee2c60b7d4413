"""The agent pages: the registry for admins, each agent's record, and the kill switch in
the browser's forms (htmx partials), with the permissions of PROTOCOL.md section 8."""

import json
import re
from datetime import timedelta

from sqlalchemy import select, update

from review.agents.killswitch import Actor, kill
from review.models import Agent, AgentSecret, utcnow
from tests.helpers import AgentClient, audit_events, logged_in, refund


def test_the_list_shows_state_owners_undecided_and_health(app, agent, people):
    agent.defer()
    page = logged_in(app, "rita").get("/agents").get_data(as_text=True)
    assert "billing-bot" in page and "olivia" in page and "active" in page
    assert re.search(r'class="num">1<', page)
    assert "no callback URL" in page
    assert "Stop all agents" not in page  # admins only
    assert "Stop all agents" in logged_in(app, "ada").get("/agents").get_data(as_text=True)


def test_an_owner_flips_the_switch_with_a_reason_through_htmx(app, svc, agent, people):
    d_id = agent.defer().get_json()["id"]
    owner = logged_in(app, "olivia")
    page = owner.get(f"/agents/{agent.slug}").get_data(as_text=True)
    assert ">Kill switch</button>" in page
    form = owner.get(
        f"/agents/{agent.slug}/switch?action=kill", headers={"HX-Request": "true"}
    ).get_data(as_text=True)
    assert 'for="switch-reason">Reason<' in form and "Stop billing-bot" in form
    panel = owner.post(f"/agents/{agent.slug}/kill", {"reason": "refund loop"}, htmx=True)
    text = panel.get_data(as_text=True)
    assert panel.status_code == 200 and 'id="switch"' in text and "Recent deferrals" in text
    assert "killed" in text and "refund loop" in text and ">Revive</button>" in text
    assert agent.defer().status_code == 423
    assert agent.get(f"/api/v1/deferrals/{d_id}").get_json()["status"] == "killed"
    revived = owner.post(f"/agents/{agent.slug}/revive", {"reason": "fixed"}, htmx=True)
    assert ">Kill switch</button>" in revived.get_data(as_text=True)
    assert agent.defer().status_code == 202


def test_a_flip_without_a_reason_changes_nothing(app, agent, people):
    owner = logged_in(app, "olivia")
    panel = owner.post(f"/agents/{agent.slug}/kill", {"reason": " "}, htmx=True)
    assert "reason is required" in panel.get_data(as_text=True)
    assert agent.defer().status_code == 202


def test_other_reviewers_and_auditors_see_no_switch_and_are_refused(app, svc, agent, people):
    for name in ("rita", "audrey"):
        user = logged_in(app, name)
        page = user.get(f"/agents/{agent.slug}").get_data(as_text=True)
        assert "Kill switch</button>" not in page
        assert user.post(f"/agents/{agent.slug}/kill", {"reason": "x"}).status_code == 403
        assert user.get(f"/agents/{agent.slug}/switch?action=kill").status_code == 403
    assert [e.actor_id for e in audit_events(svc, "agent.flip_refused")] == ["rita", "audrey"]
    assert agent.defer().status_code == 202


def test_an_admin_kills_any_agent_and_stops_all_for_an_incident(app, make_agent, people):
    one = make_agent()
    two = make_agent("ops-bot", owner="omar")
    admin = logged_in(app, "ada")
    admin.post(f"/agents/{one.slug}/kill", {"reason": "admin call"})
    assert one.defer().status_code == 423
    response = admin.post("/agents/stop-all", {"reason": "incident 7"})
    assert response.status_code == 302
    assert two.defer().status_code == 423
    assert "Stopped 1 agent" in admin.get("/agents").get_data(as_text=True)
    admin.post("/agents/revive-all", {"reason": "over"})
    assert one.defer().status_code == 202 and two.defer().status_code == 202
    assert logged_in(app, "olivia").post("/agents/stop-all", {"reason": "x"}).status_code == 403


def test_an_admin_registers_an_agent_and_sees_its_secret_once(app, svc, people):
    admin = logged_in(app, "ada")
    form = admin.get("/agents/new").get_data(as_text=True)
    assert 'for="slug"' in form and 'for="owners"' in form
    response = admin.post(
        "/agents",
        {
            "slug": "mail-bot",
            "name": "Mailer",
            "owners": "rita",
            "trace_url_template": "https://traces.example.com/t/{trace_id}",
        },
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    secret = re.search(r'value="(whsec_[^"]+)"', response.get_data(as_text=True)).group(1)
    assert 'data-copy="secret-value"' in response.get_data(as_text=True)
    mailer = AgentClient(app.test_client(), "mail-bot", secret)
    d_id = mailer.defer(refund(trace={"id": "abc 1"})).get_json()["id"]
    assert secret not in admin.get("/agents/mail-bot").get_data(as_text=True)
    item = admin.get(f"/deferrals/{d_id}").get_data(as_text=True)
    assert 'href="https://traces.example.com/t/abc%201"' in item
    [created] = audit_events(svc, "agent.created")
    assert created.actor_id == "ada" and json.loads(created.payload)["owners"] == ["rita"]


def test_registration_errors_are_shown_and_nothing_is_created(app, svc, people):
    admin = logged_in(app, "ada")
    bad = admin.post("/agents", {"slug": "Bad Slug", "owners": "rita"})
    assert bad.status_code == 422 and "slug must match" in bad.get_data(as_text=True)
    bad = admin.post("/agents", {"slug": "new", "owners": "rita"})
    assert bad.status_code == 422 and "taken by a page" in bad.get_data(as_text=True)
    bad = admin.post(
        "/agents", {"slug": "ok-bot", "owners": "rita", "trace_url_template": "ftp://x"}
    )
    assert bad.status_code == 422 and "trace URL template" in bad.get_data(as_text=True)
    with svc.db.read() as session:
        assert session.scalars(select(Agent.slug)).all() == []
    assert logged_in(app, "rita").get("/agents/new").status_code == 403


def test_rotation_keeps_the_old_secret_for_the_overlap_then_stops_it(app, svc, agent, people):
    admin = logged_in(app, "ada")
    page = admin.post(f"/agents/{agent.slug}/rotate").get_data(as_text=True)
    new_secret = re.search(r'value="(whsec_[^"]+)"', page).group(1)
    assert new_secret != agent.secret
    assert agent.defer().status_code == 202  # the old one still works, for the overlap
    fresh = AgentClient(app.test_client(), agent.slug, new_secret)
    assert fresh.defer(refund(summary="new key")).status_code == 202
    with svc.db.write() as session:  # the overlap has passed
        session.execute(
            update(AgentSecret)
            .where(AgentSecret.expires_at.is_not(None))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    svc.secrets.forget(agent.slug)
    assert agent.defer(refund(summary="old key")).status_code == 401
    assert fresh.defer(refund(summary="new key 2")).status_code == 202
    [rotated] = audit_events(svc, "agent.secret_rotated")
    assert rotated.actor_id == "ada" and "new_fingerprint" in json.loads(rotated.payload)


def test_settings_changes_are_audited_and_validated(app, svc, agent, people):
    admin = logged_in(app, "ada")
    ok = admin.post(
        f"/agents/{agent.slug}/settings",
        {"name": "Billing", "owners": ["olivia", "rita"], "breaker_flood": "5/10",
         "breaker_rejections": "3"},
    )  # fmt: skip
    assert ok.status_code == 302
    [updated] = audit_events(svc, "agent.updated")
    changes = json.loads(updated.payload)["changes"]
    assert changes["owners"] == {"from": ["olivia"], "to": ["olivia", "rita"]}
    assert changes["breaker_flood"] == {"from": None, "to": "5/10"}
    page = admin.get(f"/agents/{agent.slug}").get_data(as_text=True)
    assert "more than 5 deferrals in 10 s" in page and "3 rejections in a row" in page
    bad = admin.post(
        f"/agents/{agent.slug}/settings",
        {"name": "Billing", "owners": "olivia", "breaker_flood": "lots"},
    )
    assert "must look like 200/60" in admin.get(bad.location).get_data(as_text=True)
    assert len(audit_events(svc, "agent.updated")) == 1
    rita = logged_in(app, "rita")
    assert rita.post(f"/agents/{agent.slug}/settings", {"name": "x"}).status_code == 403


def test_deactivation_stops_the_agent_for_good(app, svc, agent, people):
    d_id = agent.defer().get_json()["id"]
    admin = logged_in(app, "ada")
    admin.post(f"/agents/{agent.slug}/deactivate", {"reason": "retired"})
    assert agent.defer().status_code == 401  # its secrets no longer verify
    with svc.db.read() as session:
        row = session.scalar(select(Agent).where(Agent.slug == agent.slug))
        assert row.state == "killed" and row.deactivated_at is not None
    page = admin.get(f"/agents/{agent.slug}").get_data(as_text=True)
    assert "cannot be revived" in page and ">Revive</button>" not in page
    admin.post(f"/agents/{agent.slug}/revive", {"reason": "oops"})
    with svc.db.read() as session:
        assert session.scalar(select(Agent.state).where(Agent.slug == agent.slug)) == "killed"
    assert d_id in page


def test_a_breaker_trip_shows_on_the_list_and_the_page(make_app, make_agent, people):
    app = make_app(breaker_flood="1/60", agent_rate=0)
    agent = make_agent().on(app)
    agent.defer(refund(summary="one"))
    agent.defer(refund(summary="two"))
    owner = logged_in(app, "olivia")
    listing = owner.get("/agents").get_data(as_text=True)
    assert "system:breaker" in listing and "flood" in listing
    page = owner.get(f"/agents/{agent.slug}").get_data(as_text=True)
    assert "agent.breaker_tripped" in page and "rule flood" in page


def test_the_pages_poll_and_reload_when_a_switch_flips(app, svc, agent, people):
    owner = logged_in(app, "olivia")
    pages = {"/agents": "/agents/state", f"/agents/{agent.slug}": f"/agents/{agent.slug}/state"}
    seen = {}
    for page_path, state_path in pages.items():
        page = owner.get(page_path).get_data(as_text=True)
        assert 'hx-trigger="every 5s"' in page
        seen[state_path] = re.search(r'state\?since=([0-9a-f]+)"', page).group(1)
        quiet = owner.get(f"{state_path}?since={seen[state_path]}")
        assert quiet.status_code == 204 and "HX-Refresh" not in quiet.headers
    kill(svc, agent.slug, Actor("system", "breaker"), "breaker: flood")
    for state_path, since in seen.items():
        assert owner.get(f"{state_path}?since={since}").headers["HX-Refresh"] == "true"

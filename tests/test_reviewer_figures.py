"""Each reviewer's figures (issue 15): decisions, approval rate, median time in view,
flagged fast decisions and canary catch rate over 7 and 30 days, for admins only.
The page in a browser, with axe: tests/test_canaries_browser.py."""

from __future__ import annotations

import random
import re
from datetime import timedelta

from sqlalchemy import event, update

from review.canaries.seeding import seed_canaries
from review.models import Deferral, utcnow
from review.notifications.models import Notification
from review.reviewing.claims import claim_batch, claim_one
from review.reviewing.decisions import decide
from review.reviewing.figures import reviewer_figures
from tests.helpers import logged_in, refund
from tests.test_canaries import reviewer_holder
from tests.test_notify_email import critical, defer, sweep
from tests.test_notify_people import mail_app, smtp  # noqa: F401  (fixtures)


def _claimed_long_ago(svc) -> None:
    with svc.db.write() as session:
        session.execute(
            update(Deferral)
            .where(Deferral.status == "in_review")
            .values(claimed_at=utcnow() - timedelta(minutes=10))
        )


def _decide_one(svc, agent, who, verdict: str, seen_ms: int | None) -> None:
    d_id = agent.defer(refund(summary=f"Refund {random.random()}")).get_json()["id"]
    claim_one(svc, who, d_id)
    _claimed_long_ago(svc)
    decide(svc, who, d_id, verdict, "no" if verdict == "reject" else None, seen_ms=seen_ms)


def _canary(svc, who, verdict: str) -> None:
    (seeded,) = seed_canaries(svc, ("user", "ada"), agent_slug="billing-bot")
    claim_one(svc, who, seeded.deferral_id)
    decide(svc, who, seeded.deferral_id, verdict, "bad" if verdict == "reject" else None)


def _by_name(figures):
    return {f.username: f for f in figures}


def test_each_reviewers_figures_come_from_their_decisions_and_canaries(svc, agent, people):
    rita, sam = reviewer_holder(svc, "rita"), reviewer_holder(svc, "sam")
    for seen in (4000, 8000, 12000):
        _decide_one(svc, agent, rita, "approve", seen)
    _decide_one(svc, agent, rita, "reject", 1000)  # under 3 s: flagged
    _decide_one(svc, agent, sam, "approve", None)  # no figure from the browser: flagged
    _canary(svc, rita, "reject")
    _canary(svc, sam, "approve")
    with svc.db.read() as session:
        figures = _by_name(reviewer_figures(session, 7))
    r, s = figures["rita"], figures["sam"]
    assert (r.decisions, r.approvals, r.flagged) == (4, 3, 1)  # the canary is not a decision
    assert r.approval_rate == 0.75 and r.median_seconds == 6.0  # of 1, 4, 8, 12
    assert (r.canaries, r.caught, r.catch_rate) == (1, 1, 1.0)
    assert (s.decisions, s.flagged, s.median_seconds) == (1, 1, 0.0)
    assert (s.canaries, s.caught, s.catch_rate) == (1, 0, 0.0)
    ada = figures["ada"]  # an admin who decided nothing is listed, with no figures
    assert (ada.decisions, ada.approval_rate, ada.median_seconds, ada.catch_rate) == (
        0,
        None,
        None,
        None,
    )
    assert "audrey" not in figures  # auditors do not decide


def test_the_seven_day_window_leaves_out_older_decisions(svc, agent, people):
    rita = reviewer_holder(svc, "rita")
    _decide_one(svc, agent, rita, "approve", 5000)
    _canary(svc, rita, "approve")
    later = utcnow() + timedelta(days=8)
    with svc.db.read() as session:
        week = _by_name(reviewer_figures(session, 7, now=later))["rita"]
        month = _by_name(reviewer_figures(session, 30, now=later))["rita"]
    assert (week.decisions, week.canaries) == (0, 0)
    assert (month.decisions, month.canaries, month.median_seconds) == (1, 1, 5.0)


def test_the_figures_take_a_fixed_number_of_statements_however_many_reviewers(svc, agent, people):
    from review.users import create_user

    with svc.db.write() as session:
        for n in range(12):
            create_user(session, f"reviewer{n}", "reviewer", "correct horse battery")
    rita = reviewer_holder(svc, "rita")
    _decide_one(svc, agent, rita, "approve", 5000)
    statements = []
    with svc.db.read() as session:
        engine = session.get_bind()
        listen = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(engine, "before_cursor_execute", listen)
        try:
            figures = reviewer_figures(session, 30)
        finally:
            event.remove(engine, "before_cursor_execute", listen)
    assert len(figures) == 16
    assert len(statements) == 5  # people, first event, counts, medians, canaries


def test_only_admins_see_the_reviewers_and_canaries_pages(app, svc, agent, people):
    rita = reviewer_holder(svc, "rita")
    claim_batch(svc, rita)
    assert logged_in(app, "rita").get("/reviewers").status_code == 403
    assert logged_in(app, "rita").get("/canaries").status_code == 403
    assert logged_in(app, "audrey").get("/canaries").status_code == 403
    ada = logged_in(app, "ada")
    page = ada.get("/reviewers").get_data(as_text=True)
    assert "Last 7 days" in page and "Last 30 days" in page and ">rita</th>" in page
    assert 'href="/reviewers"' in page and 'href="/canaries"' in page  # the admin nav


def test_an_admin_seeds_canaries_from_the_page_and_sees_their_outcomes(app, svc, agent, people):
    ada = logged_in(app, "ada")
    answer = ada.post("/canaries", {"agent": "billing-bot", "kind": "delete-backups", "count": "2"})
    assert answer.status_code == 302
    page = ada.get("/canaries").get_data(as_text=True)
    assert "Seeded 2 canaries" in page and page.count(">open</span>") == 2
    refused = ada.post("/canaries", {"count": "99"})
    assert refused.status_code == 302
    assert "Seed between 1 and 50" in ada.get("/canaries").get_data(as_text=True)
    ada.post("/canaries", {"count": "two"})
    assert "give a whole number" in ada.get("/canaries").get_data(as_text=True)


def test_approving_a_canary_on_the_batch_page_tells_the_reviewer_at_once(app, svc, agent, people):
    (seeded,) = seed_canaries(svc, ("user", "ada"), agent_slug="billing-bot")
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    answer = rita.post(f"/batch/{seeded.deferral_id}/approve", {"seen_ms": "5000"}, htmx=True)
    html = answer.get_data(as_text=True)
    assert "This was a canary: a test item that should have been rejected." in html
    assert 'role="alert"' in html
    page = rita.get(f"/deferrals/{seeded.deferral_id}").get_data(as_text=True)
    assert "This was a canary" in page and "canary.missed" in page


def test_the_page_shows_time_to_decision_per_channel(mail_app, make_agent, people):  # noqa: F811
    svc = mail_app.extensions["countersign"]
    d = defer(svc, make_agent().on(mail_app), critical())
    sweep(svc)
    with svc.db.write() as session:  # the mails went out ten minutes before the decision
        session.execute(update(Notification).values(finished_at=utcnow() - timedelta(minutes=10)))
    rita = reviewer_holder(svc, "rita")
    claim_one(svc, rita, d.id)
    decide(svc, rita, d.id, "reject", "not this one")
    page = logged_in(mail_app, "ada").get("/reviewers").get_data(as_text=True)
    assert page.count('<th scope="row">email</th><td>1</td>') == 2  # 7 and 30 days
    rows = {row.split("</th>")[0]: row for row in page.split('<th scope="row">')[1:]}
    assert re.search(r"email 6\d\d s \(1\)", rows["rita"]) and "email" not in rows["sam"]

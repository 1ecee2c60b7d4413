"""Live pages: changes elsewhere reach an open batch or queue through a cheap poll
(review/reviewing/live.py, review/web/live_pages.py).

The poll's promise is checked by counting: while nothing changed it answers 204
without taking a database connection at all.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import timedelta

import redis
from sqlalchemy import event

from review.agents import killswitch
from review.audit.chain import chained_write
from review.models import utcnow
from review.reviewing import live
from review.reviewing.claims import claim_batch
from review.reviewing.decisions import decide
from review.reviewing.lapsed_claims import return_lapsed_claims
from tests.helpers import logged_in, refund, reviewer


def version(svc) -> int:
    return live.version(svc.redis.client())


def poll_url(html: str) -> str:
    found = re.search(r'id="live"[^>]*hx-get="([^"]+)"', html) or re.search(
        r'hx-get="(/live/[^"]+)"', html
    )
    assert found, "the page has no live poll"
    return found.group(1).replace("&amp;", "&")


def batch_poll(html: str) -> str:
    """The batch's poll as static/review.js sends it: with the cards still to decide."""
    live = re.findall(r'<article[^>]*data-id="([^"]+)"[^>]*data-live', html)
    return poll_url(html) + "&ids=" + ",".join(live)


class Checkouts:
    """Counts the connections the app's engine hands out while it is on."""

    def __init__(self, engine):
        self.count = 0
        event.listen(engine, "checkout", self._out)
        self.engine = engine

    def _out(self, *_args):
        self.count += 1

    def close(self):
        event.remove(self.engine, "checkout", self._out)


def test_changes_bump_the_counter_and_name_the_deferrals(svc, agent):
    rita, sam = reviewer(svc), reviewer(svc, "sam2")
    ids = [agent.defer(refund(summary=f"Refund {n}")).get_json()["id"] for n in range(3)]
    start = version(svc)
    claim_batch(svc, rita)  # claimed: the queue changed
    claimed = version(svc)
    assert claimed > start
    client = svc.redis.client()
    assert sorted(live.changed_since(client, start, ids)) == sorted(ids)
    decide(svc, rita, ids[0], "approve")  # a decision
    assert live.changed_since(client, claimed, ids) == [ids[0]]
    later = utcnow() + timedelta(hours=1)
    mark = version(svc)
    with chained_write(svc.db) as session:  # a lease lost
        assert return_lapsed_claims(session, later) == 2
    assert sorted(live.changed_since(client, mark, ids)) == sorted(ids[1:])
    claim_batch(svc, sam)
    mark = version(svc)
    killswitch.kill(svc, "billing-bot", killswitch.Actor("user", "olivia"), "loop")  # a kill
    assert sorted(live.changed_since(client, mark, ids)) == sorted(ids[1:])


def test_an_unchanged_batch_poll_answers_204_without_the_database(app, svc, agent, people):
    agent.defer()
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    url = batch_poll(rita.get("/batch").get_data(as_text=True))
    checkouts = Checkouts(svc.db.engine)
    try:
        for _ in range(5):
            answer = rita.get(url)
            assert answer.status_code == 204
            assert answer.headers["Cache-Control"] == "no-store"
    finally:
        checkouts.close()
    assert checkouts.count == 0


def test_a_batch_poll_brings_the_card_that_was_killed(app, svc, agent, people):
    d_id = agent.defer().get_json()["id"]
    other = agent.defer(refund(summary="Another refund")).get_json()["id"]
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    url = batch_poll(rita.get("/batch").get_data(as_text=True))
    killswitch.kill(svc, "billing-bot", killswitch.Actor("user", "olivia"), "refund loop")
    answer = rita.get(url)
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert f'id="card-{d_id}"' in html and f'id="card-{other}"' in html
    assert 'hx-swap-oob="outerHTML"' in html
    assert "Killed by user:olivia: refund loop." in html or "refund loop" in html
    assert 'id="batch-left" hx-swap-oob="innerHTML">0<' in html
    follow = poll_url(html) + f"&ids={d_id},{other}"
    assert rita.get(follow).status_code == 204  # the new number: quiet again


def test_news_about_other_items_costs_no_card(app, svc, agent, people):
    agent.defer()
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    url = batch_poll(rita.get("/batch").get_data(as_text=True))
    agent.defer(refund(summary="Someone else's"))
    claim_batch(svc, reviewer(svc, "sam2"))  # moves the number, not rita's items
    answer = rita.get(url)
    assert answer.status_code == 200 and "article" not in answer.get_data(as_text=True)


def test_the_queue_poll_is_quiet_until_something_changes(app, svc, agent, people):
    agent.defer(refund(summary="First refund"))
    rita = logged_in(app, "rita")
    url = poll_url(rita.get("/queue").get_data(as_text=True))
    assert rita.get(url).status_code == 204
    claim_batch(svc, reviewer(svc, "sam2"))
    answer = rita.get(url)
    assert answer.status_code == 200
    assert "Nothing is waiting for a decision." in answer.get_data(as_text=True)


def test_a_new_deferral_moves_the_queue_poll_at_once(app, svc, agent, people):
    agent.defer(refund(summary="First refund"))
    rita = logged_in(app, "rita")
    url = poll_url(rita.get("/queue").get_data(as_text=True))
    assert rita.get(url).status_code == 204
    agent.defer(refund(summary="A refund that just arrived"))
    answer = rita.get(url)  # well inside the ten seconds after which it re-reads anyway
    assert answer.status_code == 200
    assert "A refund that just arrived" in answer.get_data(as_text=True)


def test_a_new_deferral_costs_an_open_batch_no_database(app, svc, agent, people):
    agent.defer()
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    url = batch_poll(rita.get("/batch").get_data(as_text=True))
    agent.defer(refund(summary="Another refund"))
    checkouts = Checkouts(svc.db.engine)
    try:
        answer = rita.get(url)
    finally:
        checkouts.close()
    assert answer.status_code == 200 and "article" not in answer.get_data(as_text=True)
    assert checkouts.count == 0


def test_arrivals_noted_while_a_notice_is_on_its_way_go_in_one_incr(svc):
    """Intake only notes an arrival; the arrivals' thread sends one INCR for however
    many were noted since its last send."""
    first_send, release = threading.Event(), threading.Event()

    def client_for():  # the first send waits until five more have arrived
        if not first_send.is_set():
            first_send.set()
            release.wait(5)
        return svc.redis.client()

    arrivals = live.Arrivals(client_for)
    start = version(svc)
    arrivals.note()
    assert first_send.wait(5)
    for _ in range(5):
        arrivals.note()
    release.set()
    deadline = time.monotonic() + 5
    while version(svc) < start + 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    arrivals.close()
    assert version(svc) == start + 2 and arrivals.sends == 2


def test_a_new_deferral_moves_the_counter_from_another_thread(svc, agent, monkeypatch):
    senders = []
    send = live.Arrivals._send

    def recorded(arrivals, number):
        senders.append(threading.current_thread())
        send(arrivals, number)

    monkeypatch.setattr(live.Arrivals, "_send", recorded)
    start = version(svc)
    agent.defer()  # the test client serves it on this thread
    assert threading.current_thread() not in senders
    svc.arrivals.send_noted()  # as a poll does first: sent by now, whichever thread sent it
    assert version(svc) == start + 1


def test_arrivals_lost_to_a_redis_outage_are_logged(caplog):
    down = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    arrivals = live.Arrivals(lambda: down)
    with caplog.at_level(logging.WARNING):
        arrivals.note()
        arrivals.close()
    assert "live pages not told of new deferrals" in caplog.text
    arrivals.send_noted()  # nothing left to send, nothing raised


def test_the_queue_poll_shows_a_snoozed_item_as_snoozed(app, svc, agent, people):
    from review.reviewing.set_aside import snooze

    d_id = agent.defer(refund(summary="Refund later")).get_json()["id"]
    rita = logged_in(app, "rita")
    url = poll_url(rita.get("/queue").get_data(as_text=True))
    sam = reviewer(svc, "sam2")
    claim_batch(svc, sam)
    snooze(svc, sam, d_id, utcnow() + timedelta(hours=1), "waiting for the invoice")
    answer = rita.get(url)
    assert answer.status_code == 200
    assert "snoozed until" in answer.get_data(as_text=True)


def test_a_poll_without_a_login_is_refused(app, client):
    assert client.get("/live/batch?v=0&ids=x").status_code == 401
    assert client.get("/live/queue?v=0&t=0").status_code == 401

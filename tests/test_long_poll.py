"""Long-poll (PROTOCOL.md 4.2, `?wait=N`): the answer comes as soon as the deferral ends, or
when the time is up; a waiting request holds no database connection and starves nothing."""

import subprocess
import sys
import threading
import time

import httpx
import pytest

from review import redis_keys
from review.reviewing.ending import cancel_deferral
from review.signing import sign_headers
from tests.helpers import ROOT, app_environment, approved, free_port, reviewer, wait_for


def later(seconds, fn):
    t = threading.Timer(seconds, fn)
    t.start()
    return t


def test_wait_answers_as_soon_as_the_deferral_ends(app, svc, agent):
    d = agent.defer().get_json()
    signer = svc.secrets.signer
    with svc.db.read() as session:
        me = signer(session, agent.slug)
    later(0.5, lambda: cancel_deferral(svc, d["id"], me, "no longer needed"))
    started = time.monotonic()
    response = agent.get(f"/api/v1/deferrals/{d['id']}?wait=20")
    took = time.monotonic() - started
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
    assert 0.4 < took < 3, took


def test_wait_answers_with_the_pending_deferral_when_time_is_up(agent):
    d = agent.defer().get_json()
    started = time.monotonic()
    response = agent.get(f"/api/v1/deferrals/{d['id']}?wait=1")
    assert response.get_json()["status"] == "pending"
    assert 0.9 < time.monotonic() - started < 3


def test_wait_on_an_ended_deferral_answers_at_once(svc, agent):
    d = approved(svc, agent, reviewer(svc))
    started = time.monotonic()
    assert agent.get(f"/api/v1/deferrals/{d['id']}?wait=60").get_json()["status"] == "approved"
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("wait", ["61", "-1", "1.5", "soon", ""])
def test_a_bad_wait_is_a_clear_422(agent, wait):
    d = agent.defer().get_json()
    response = agent.get(f"/api/v1/deferrals/{d['id']}?wait={wait}")
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request" and "0 to 60" in error["message"]


def test_waiting_requests_hold_no_database_connection(app, svc, agent):
    ids = [agent.defer().get_json()["id"] for _ in range(6)]
    answers = []

    def poll(d_id):
        answers.append(agent.on(app).get(f"/api/v1/deferrals/{d_id}?wait=30").get_json()["status"])

    threads = [threading.Thread(target=poll, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    # Each request takes its long-poll place after its first read; with all six waiting,
    # a moment comes when no connection is checked out. A request holding one through its
    # wait would never give that moment. (A second's sleep was not enough on a loaded
    # machine: some requests were still on their first read.)
    places = svc.redis.client()
    wait_for(
        lambda: (
            places.zcard(redis_keys.long_polls(agent.slug)) == 6
            and svc.db.engine.pool.checkedout() == 0
        ),
        timeout=20,
        interval=0.01,
        message=lambda: f"{svc.db.engine.pool.checkedout()} connections held while waiting",
    )
    with svc.db.read() as session:
        me = svc.secrets.signer(session, agent.slug)
    for d_id in ids:  # the waits end now, not at their 30 s
        cancel_deferral(svc, d_id, me, "no longer needed")
    for t in threads:
        t.join(timeout=25)
    assert answers == ["cancelled"] * 6


def test_a_lost_wake_up_costs_seconds_not_the_answer(app, svc, agent, monkeypatch):
    """With Redis's message gone, the waiting request still sees the end on a re-read."""
    d = agent.defer().get_json()
    with svc.db.read() as session:
        me = svc.secrets.signer(session, agent.slug)
    monkeypatch.setattr("review.redis_keys.ENDED_CHANNEL", "countersign:nobody-listens")
    later(0.3, lambda: cancel_deferral(svc, d["id"], me, "no longer needed"))
    started = time.monotonic()
    assert agent.get(f"/api/v1/deferrals/{d['id']}?wait=20").get_json()["status"] == "cancelled"
    assert time.monotonic() - started < 7


@pytest.fixture
def gunicorn(settings_overrides, tmp_path):
    """The app under real gunicorn, with the worker class the README prescribes."""
    port = free_port()
    log = tmp_path / "gunicorn.log"
    log_file = log.open("wb")
    # One agent holds the twenty waits below: room for all of them (the default is 8).
    env = app_environment(
        settings_overrides, COUNTERSIGN_AGENT_RATE="0", COUNTERSIGN_LONG_POLLS_PER_AGENT="20"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "app:app", "-b", f"127.0.0.1:{port}",
         "--workers", "1", "--worker-class", "gthread", "--threads", "32"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log_file,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(base + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, timeout=30, interval=0.2, message="gunicorn to answer /healthz")
    except AssertionError as failed:
        proc.kill()
        proc.wait()
        log_file.close()
        raise AssertionError(f"{failed}\n{log.read_text()[-2000:]}") from None
    yield base
    # Graceful stop waits for requests still waiting (up to gunicorn's 30 s): a test that
    # failed with twenty waits open must not leave the process behind, whose Popen would
    # then warn "still running" in whichever test the garbage collector next runs in.
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    finally:
        log_file.close()


def signed_get(base, agent, path):
    return httpx.get(base + path, headers=sign_headers(agent.secret, "msg_lp", b""), timeout=30)


def test_twenty_waiting_agents_starve_nobody_under_gunicorn(gunicorn, svc, agent):
    ids = [agent.defer().get_json()["id"] for _ in range(20)]
    answers = {}

    def poll(d_id):
        answers[d_id] = signed_get(gunicorn, agent, f"/api/v1/deferrals/{d_id}?wait=20").json()

    threads = [threading.Thread(target=poll, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    # The twenty are waiting once each holds its long-poll place (in Redis, taken after
    # the request's first read).
    places = svc.redis.client()
    wait_for(lambda: places.zcard(redis_keys.long_polls(agent.slug)) == 20, timeout=20)
    for _ in range(5):  # other requests are answered while the twenty wait
        assert httpx.get(gunicorn + "/healthz", timeout=5).status_code == 200
        assert signed_get(gunicorn, agent, f"/api/v1/deferrals/{ids[0]}").status_code == 200
    # Starved, they would have been answered only as the waits ended (20 s): the twenty
    # are still waiting. (Not a clock: 10 requests took 5.5 s here at load 26.)
    assert not answers
    with svc.db.read() as session:
        me = svc.secrets.signer(session, agent.slug)
    for d_id in ids:
        cancel_deferral(svc, d_id, me, "done")
    ended_at = time.monotonic()  # the last end: each answer comes on its wake-up
    for t in threads:
        t.join(timeout=25)
    assert time.monotonic() - ended_at < 5  # on their wake-ups, not at the end of the 20 s
    assert {a["status"] for a in answers.values()} == {"cancelled"}

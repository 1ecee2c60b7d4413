"""The worker: rq on real Redis runs Countersign's jobs end to end, in the app's context."""

import json
import time
import zlib
from datetime import timedelta

from sqlalchemy import select, update

from approval_queue import names
from approval_queue.jobs import enqueue, queue
from approval_queue.worker import run_worker
from review.demo import DEMO_AGENT, ensure_demo
from review.models import AuditEvent, Deferral, utcnow
from review.reviewing.claims import claim_batch
from tests.helpers import app_environment, count_rows, reviewer, run_flask, wait_for


def test_jobs_are_enqueued_by_name_with_json_arguments(svc, redis_client):
    job = enqueue(redis_client, "approval_queue.demo_agent.post_sample", 3)
    assert job.func_name == "approval_queue.demo_agent.post_sample"
    assert job.args == [3] or job.args == (3,)
    raw = zlib.decompress(redis_client.hget(f"rq:job:{job.id}", "data"))
    assert json.loads(raw)[0] == "approval_queue.demo_agent.post_sample"  # JSON, not pickle


def test_a_burst_worker_runs_a_job_inside_the_app(app, svc, redis_client):
    ensure_demo(svc)
    enqueue(redis_client, "approval_queue.demo_agent.seed")
    with app.app_context():
        assert run_worker(svc, burst=True) is True
    assert count_rows(svc, Deferral) == 6
    assert queue(redis_client, names.DEFAULT).count == 0


def test_a_delayed_job_runs_once_it_is_due(app, svc, redis_client):
    ensure_demo(svc)
    job = enqueue(redis_client, "approval_queue.demo_agent.post_sample", 0, delay=0.01)
    registry = queue(redis_client, names.DEFAULT).scheduled_job_registry
    due = registry.get_scheduled_time(job).timestamp()  # rq counts in whole seconds
    wait_for(lambda: time.time() >= due, timeout=3, message="the delayed job to fall due")
    with app.app_context():
        run_worker(svc, burst=True)
    assert count_rows(svc, Deferral) == 1


def test_the_worker_command_runs_jobs_in_its_own_process(svc, settings_overrides, redis_client):
    ensure_demo(svc)
    enqueue(redis_client, "approval_queue.demo_agent.post_sample", 1)
    out = run_flask("worker", "--burst", env=app_environment(settings_overrides), timeout=120)
    assert out.returncode == 0, out.stderr
    assert count_rows(svc, Deferral) == 1
    with svc.db.read() as session:
        d = session.scalars(select(Deferral)).one()
        assert d.agent.slug == DEMO_AGENT


def test_the_worker_returns_lapsed_claims_to_the_queue(app, svc, agent, redis_client):
    agent.defer()
    assert len(claim_batch(svc, reviewer(svc))) == 1
    with svc.db.write() as session:
        session.execute(update(Deferral).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    with app.app_context():
        run_worker(svc, burst=True)
    with svc.db.read() as session:
        d = session.scalars(select(Deferral)).one()
        assert d.status == "pending" and d.claimed_by is None
        kinds = session.scalars(
            select(AuditEvent.event_type).where(AuditEvent.deferral_id == d.id)
        ).all()
    assert kinds[-1] == "deferral.lease_lapsed"

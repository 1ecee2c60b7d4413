"""Hostile and slow callback receivers (issue 13, finding 1): one deadline bounds a whole
attempt, the answer's body is read only so far, and one agent's receiver never holds up
another agent's callbacks. Real receivers on 127.0.0.1 (raw sockets, so they can trickle
and flood), a real `flask --app app worker` process, real Redis and database."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select as sql_select

from review.models import Agent, DeliveryAttempt, OutboxEvent
from tests.helpers import approved, refund, reviewer

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Connection:
    """One connection a receiver took: when it opened and closed, what went back."""

    opened: float
    webhook_id: str = ""
    closed: float | None = None
    sent: int = 0  # body bytes written to the worker
    cut_off: bool = False  # the worker closed it before the answer was complete


@dataclass
class RawReceiver:
    """An HTTP receiver on a raw socket: reads each request, then `answer(conn, record)`."""

    answer: object
    connections: list[Connection] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/hooks"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        record = Connection(opened=time.monotonic())
        with self.lock:
            self.connections.append(record)
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                head += chunk
            headers = {}
            for line in head.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
                name, _, value = line.decode().partition(": ")
                headers[name.lower()] = value
            record.webhook_id = headers.get("webhook-id", "")
            body = head.split(b"\r\n\r\n", 1)[1]
            while len(body) < int(headers.get("content-length", 0)):
                body += conn.recv(65536)
            try:
                self.answer(self, conn, record)
            except OSError:  # the worker closed the connection under us
                record.cut_off = True
            record.closed = time.monotonic()

    def closed_by_peer(self, conn: socket.socket, wait: float) -> bool:
        """Wait up to `wait` seconds; True as soon as the worker has closed the connection."""
        readable, _, _ = select.select([conn], [], [], wait)
        if not readable:
            return False
        try:
            return conn.recv(1) == b""
        except OSError:
            return True

    def open_now(self) -> int:
        with self.lock:
            return sum(1 for c in self.connections if c.closed is None)

    def most_open_at_once(self) -> int:
        with self.lock:
            edges = [(c.opened, 1) for c in self.connections]
            edges += [(c.closed, -1) for c in self.connections if c.closed is not None]
        most = now = 0
        for _at, step in sorted(edges):
            now += step
            most = max(most, now)
        return most

    def close(self) -> None:
        self.stopped.set()
        self.server.close()


def trickle(receiver: RawReceiver, conn: socket.socket, record: Connection) -> None:
    """200 with a 10 MB Content-Length, then one byte a second: each read is quick."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n")
    while not receiver.stopped.is_set():
        if receiver.closed_by_peer(conn, 1.0):
            record.cut_off = True
            return
        conn.sendall(b"x")
        record.sent += 1


def sleep_then_answer(receiver: RawReceiver, conn: socket.socket, record: Connection) -> None:
    """A plain slow receiver: nothing for 60 s, then 200."""
    if receiver.closed_by_peer(conn, 60) or receiver.stopped.is_set():
        record.cut_off = True
        return
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


FLOOD_BYTES = 256 * 1024 * 1024


def flood(receiver: RawReceiver, conn: socket.socket, record: Connection) -> None:
    """200 with a 256 MiB body, written as fast as the worker takes it."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % FLOOD_BYTES)
    chunk = b"x" * (1024 * 1024)
    while record.sent < FLOOD_BYTES:
        conn.sendall(chunk)
        record.sent += len(chunk)


@pytest.fixture
def raw_receiver():
    made = []

    def make(answer) -> RawReceiver:
        made.append(RawReceiver(answer))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def worker_process(settings_overrides, tmp_path):
    """Start `flask --app app worker` with these COUNTERSIGN_ settings; killed at the end."""
    procs = []

    def start(**settings) -> subprocess.Popen:
        env = {
            **os.environ,
            "DATABASE_URL": settings_overrides["database_url"],
            "REDIS_URL": settings_overrides["redis_url"],
            "SECRET_KEY": settings_overrides["secret_key"],
            "COUNTERSIGN_INSTANCE_DIR": settings_overrides["instance_dir"],
            "COUNTERSIGN_ALLOW_PRIVATE_CALLBACKS": "1",
            **{f"COUNTERSIGN_{k.upper()}": str(v) for k, v in settings.items()},
        }
        log = (tmp_path / f"worker{len(procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "worker"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: rq's scheduler is a child
        )  # fmt: skip
        procs.append((proc, log))
        return proc

    yield start
    for proc, log in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()


def wait_for(condition, timeout: float, what: str, tmp_path: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    logs = ""
    for log in sorted(tmp_path.glob("worker*.log")) if tmp_path else ():
        logs += log.read_text(errors="replace")[-3000:]
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def events(svc, slug: str) -> list[OutboxEvent]:
    with svc.db.read() as session:
        return list(
            session.scalars(
                sql_select(OutboxEvent)
                .join(Agent, Agent.id == OutboxEvent.agent_id)
                .where(Agent.slug == slug)
                .order_by(OutboxEvent.created_at)
            )
        )


def attempts(svc, event_id: str) -> list[DeliveryAttempt]:
    with svc.db.read() as session:
        return list(
            session.scalars(
                sql_select(DeliveryAttempt)
                .where(DeliveryAttempt.event_id == event_id)
                .order_by(DeliveryAttempt.id)
            )
        )


def approve(svc, agent, holder, count: int = 1) -> None:
    for i in range(count):
        approved(svc, agent, holder, refund(summary=f"refund {i}"))


def test_a_trickling_receiver_is_cut_off_at_the_deadline_and_retried(
    make_app, make_agent, raw_receiver, worker_process, tmp_path
):
    svc = make_app(allow_private_callbacks=True, agent_rate=0).extensions["countersign"]
    receiver = raw_receiver(trickle)
    agent = make_agent("hostile-bot", callback_url=receiver.url, allow_private_callbacks=True)
    approve(svc, agent, reviewer(svc))
    worker_process(delivery_deadline=2, retry_schedule="1,3600")

    wait_for(lambda: events(svc, "hostile-bot")[0].attempts == 2, 20, "two attempts", tmp_path)
    [event] = events(svc, "hostile-bot")
    assert event.status == "pending" and "deadline exceeded" in event.last_error
    tried = attempts(svc, event.id)
    assert len(tried) == 2
    for attempt in tried:  # each ended at the 2 s deadline, though bytes kept coming
        assert attempt.status_code is None and "deadline exceeded" in attempt.error
        assert 1900 <= attempt.duration_ms < 3500
    wait_for(lambda: receiver.open_now() == 0, 5, "the receiver to see both closed")
    first, second = receiver.connections
    assert first.cut_off and second.cut_off and first.sent >= 1
    assert first.closed - first.opened < 3.5 and second.closed - second.opened < 3.5
    assert second.opened - first.closed >= 0.8  # retried after the 1 s delay, not at once
    assert first.webhook_id == second.webhook_id == event.id


def test_other_agents_callbacks_go_out_while_hostile_receivers_hold_theirs(
    make_app, make_agent, raw_receiver, receiver_factory, worker_process, tmp_path
):
    svc = make_app(allow_private_callbacks=True, agent_rate=0).extensions["countersign"]
    trickling, sleeping = raw_receiver(trickle), raw_receiver(sleep_then_answer)
    honest = receiver_factory((200, {}, 0))
    hostile = make_agent("hostile-bot", callback_url=trickling.url, allow_private_callbacks=True)
    slow = make_agent("slow-bot", callback_url=sleeping.url, allow_private_callbacks=True)
    billing = make_agent("billing-bot", callback_url=honest.url, allow_private_callbacks=True)
    holder = reviewer(svc)
    approve(svc, hostile, holder, 4)
    approve(svc, slow, holder, 3)
    worker_process(delivery_deadline=6, delivery_per_agent=2, retry_schedule="3600")
    wait_for(
        lambda: trickling.open_now() == 2 and sleeping.open_now() == 2,
        15,
        "both bad receivers to hold their agents' share",
        tmp_path,
    )

    decided = time.monotonic()
    approve(svc, billing, holder)
    wait_for(lambda: len(honest.requests) == 1, 10, "billing-bot's callback", tmp_path)
    arrived = time.monotonic() - decided
    assert arrived < 2.0, f"billing-bot's callback took {arrived:.1f} s"
    assert all(e.attempts == 0 for e in events(svc, "hostile-bot") + events(svc, "slow-bot"))
    assert trickling.open_now() == 2 and sleeping.open_now() == 2  # still being held
    wait_for(lambda: events(svc, "billing-bot")[0].status == "delivered", 5, "it recorded")

    # The bad receivers' callbacks end at the deadline, two at a time, and are retried later.
    wait_for(
        lambda: all(e.attempts == 1 for e in events(svc, "hostile-bot") + events(svc, "slow-bot")),
        30,
        "every bad receiver's callback tried once",
        tmp_path,
    )
    for e in events(svc, "hostile-bot") + events(svc, "slow-bot"):
        assert e.status == "pending" and "deadline exceeded" in e.last_error
    assert trickling.most_open_at_once() == 2 and sleeping.most_open_at_once() == 2


def test_a_flood_of_answer_body_is_not_read(
    make_app, make_agent, raw_receiver, worker_process, tmp_path
):
    svc = make_app(allow_private_callbacks=True, agent_rate=0).extensions["countersign"]
    receiver = raw_receiver(flood)
    agent = make_agent("flood-bot", callback_url=receiver.url, allow_private_callbacks=True)
    approve(svc, agent, reviewer(svc))
    worker_process()

    wait_for(lambda: events(svc, "flood-bot")[0].status == "delivered", 20, "delivery", tmp_path)
    [attempt] = attempts(svc, events(svc, "flood-bot")[0].id)
    assert attempt.status_code == 200 and attempt.error is None
    assert attempt.duration_ms < 2000
    wait_for(lambda: receiver.open_now() == 0, 5, "the worker to hang up")
    [connection] = receiver.connections
    assert connection.cut_off  # the worker hung up: the rest was never read
    assert connection.sent < FLOOD_BYTES // 8, f"{connection.sent} bytes went out"

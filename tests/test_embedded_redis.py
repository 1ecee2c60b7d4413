"""The embedded Redis: a real server, shared by processes, stopped by the last one out."""

import os
import subprocess
import sys

import redis

from review.embedded_redis import EmbeddedRedis, _alive
from tests.helpers import ROOT, wait_for

USER = """
import sys, time
from review.embedded_redis import EmbeddedRedis
from pathlib import Path
url = EmbeddedRedis(Path(sys.argv[1])).acquire()
print(url, flush=True)
sys.stdin.readline()   # hold on until told to leave
"""


def _start_user(instance):
    proc = subprocess.Popen(
        [sys.executable, "-c", USER, str(instance)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    url = proc.stdout.readline().strip()
    return proc, url


def _leave(proc):
    proc.stdin.write("\n")
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0
    proc.stdout.close()


def test_it_starts_a_real_redis_on_a_socket_under_instance(instance_dir):
    embedded = EmbeddedRedis(instance_dir)
    url = embedded.acquire()
    try:
        assert url == f"unix://{instance_dir}/redis.sock"
        client = redis.Redis.from_url(url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        assert client.info("server")["redis_version"]
        assert embedded.server_pid() and _alive(embedded.server_pid())
    finally:
        embedded.release()
    assert not (instance_dir / "redis.sock").exists()


def test_two_processes_share_one_server_and_the_last_one_stops_it(instance_dir):
    first, url1 = _start_user(instance_dir)
    second, url2 = _start_user(instance_dir)
    assert url1 == url2
    pid = EmbeddedRedis(instance_dir).server_pid()
    assert pid and _alive(pid)
    _leave(first)
    assert _alive(pid), "the server must outlive its first user"
    assert redis.Redis.from_url(url2).ping()
    _leave(second)
    wait_for(lambda: not _alive(pid), message="no stray redis-server after the last user left")


def test_a_user_killed_with_sigkill_does_not_keep_the_server_forever(instance_dir):
    killed, _ = _start_user(instance_dir)
    survivor, _ = _start_user(instance_dir)
    pid = EmbeddedRedis(instance_dir).server_pid()
    killed.kill()
    killed.wait()
    killed.stdin.close()
    killed.stdout.close()
    _leave(survivor)
    wait_for(lambda: not _alive(pid), message=f"the redis-server (pid {pid}) to stop")


def test_the_app_uses_the_embedded_server_when_redis_url_is_unset(make_app, instance_dir):
    app = make_app(redis_url="")
    svc = app.extensions["countersign"]
    assert app.test_client().get("/healthz").get_json() == {"status": "ok"}
    pid = svc.redis.embedded.server_pid()
    assert pid and _alive(pid)
    svc.close()
    wait_for(lambda: not _alive(pid), message=f"the redis-server (pid {pid}) to stop")
    assert os.listdir(instance_dir / "redis.users") == []

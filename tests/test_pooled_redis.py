"""Intake's Redis commands on a pooled connection (review/pooled_redis.py) keep what the
client gave: a dropped connection is replaced, an unknown script is loaded, errors are
raised as the client raises them."""

import uuid

import pytest
import redis
from redis.commands.core import Script

from review import pooled_redis


def test_a_command_answers_as_the_connection_parses_it(redis_client):
    key = f"test:pooled:{uuid.uuid4().hex}"
    assert pooled_redis.command(redis_client, "INCR", key) == 1
    assert pooled_redis.command(redis_client, "INCR", key) == 2
    assert redis_client.get(key) == b"2"


def test_a_connection_the_server_dropped_is_replaced(redis_client):
    key = f"test:pooled:{uuid.uuid4().hex}"
    pooled_redis.command(redis_client, "INCR", key)
    pooled = pooled_redis.command(redis_client, "CLIENT", "ID")
    where = redis_client.connection_pool.connection_kwargs
    other = redis.Redis(host=where["host"], port=where["port"], db=where["db"])  # its own pool
    assert other.client_kill_filter(_id=pooled) == 1
    other.close()
    assert pooled_redis.command(redis_client, "INCR", key) == 2


def test_a_script_the_server_does_not_know_is_loaded_and_run(redis_client):
    script = Script(None, f"return {{ARGV[1], '{uuid.uuid4().hex}'}}".encode())
    known = script.sha
    reply = pooled_redis.run_script(redis_client, script, [], ["7"])
    assert reply[0] == b"7"
    assert script.sha == known  # loaded under the digest it already had
    assert pooled_redis.run_script(redis_client, script, [], ["8"])[0] == b"8"


def test_a_server_error_is_raised_as_the_client_raises_it(redis_client):
    key = f"test:pooled:{uuid.uuid4().hex}"
    redis_client.set(key, "not a number")
    with pytest.raises(redis.ResponseError):
        pooled_redis.command(redis_client, "INCR", key)
    assert pooled_redis.command(redis_client, "GET", key) == b"not a number"


def test_no_server_raises_a_connection_error():
    down = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    with pytest.raises(redis.ConnectionError):
        pooled_redis.command(down, "INCR", "test:pooled:nowhere")

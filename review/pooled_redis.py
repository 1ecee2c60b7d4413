"""Intake's Redis commands sent on a pooled connection, without redis-py's client layer.

Every intake sends two commands (review/intake/admission.py's script before the body
is read, and review/reviewing/live.py's INCR after the commit, from a thread that sends
one for however many arrived). Through `redis.Redis`, each
went through a retry closure, a failure callback, the command's observability records
and the response-callback lookup, about 140 Python calls a command with redis-py 8,
more than the socket's own work (bench/redis_commands.py: 192 -> 127 µs of CPU for
intake's pair, docs/SCALING.md). Here a command takes the client's own pool's
connection, sends, reads and gives it back, and keeps what the client gave that
matters:

- the pool's checkout, which reconnects a connection that is closed or holds unread
  data, and its release;
- one more try on a dropped connection or a timeout, on a fresh connection (the
  client is built with `Retry(..., 1)`, review/services.py), after which the error is
  raised as the client raises it (`redis.ConnectionError`, `redis.TimeoutError`);
- a connection that failed is disconnected, never reused midway;
- a script the server does not know (NOSCRIPT, after a restart or a SCRIPT FLUSH) is
  loaded and run again, as `Script.__call__` does.

Replies come as the connection parses them (no response callbacks): integers, lists and
bytes, which is what intake reads of its script's answer and of INCR.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError


def command(client: redis.Redis, *args: Any) -> Any:
    """One command and its reply; one more try on a dropped connection or a timeout."""
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        try:
            conn.send_command(*args)
            return conn.read_response()
        except (redis.ConnectionError, redis.TimeoutError):
            conn.disconnect()  # the next send connects afresh
            conn.send_command(*args)
            return conn.read_response()
    except redis.ResponseError:  # the server's answer, read whole: the connection is fine
        raise
    except BaseException:
        conn.disconnect()  # whatever it holds half-read is never reused
        raise
    finally:
        pool.release(conn)


def run_script(client: redis.Redis, script: Script, keys: list[Any], args: list[Any]) -> Any:
    """`script(keys=..., args=..., client=client)` by EVALSHA; loaded first if the
    server does not know it."""
    try:
        return command(client, "EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        loaded = command(client, "SCRIPT", "LOAD", script.script)
        script.sha = loaded.decode() if isinstance(loaded, bytes) else loaded
        return command(client, "EVALSHA", script.sha, len(keys), *keys, *args)

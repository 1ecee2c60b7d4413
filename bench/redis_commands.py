"""CPU of intake's two Redis commands: redis-py's Python reply parser against hiredis's.

    .venv/bin/python bench/redis_commands.py [--blocks 10] [--per-block 1000]

Intake sends two commands per deferral (review/intake/admission.py's script before the
body is read, review/reviewing/live.py's INCR after the commit). Here both are sent as
intake sends them, through clients built as review/services.py builds them, one with each
parser, in interleaved blocks in one process (so a machine that slows down moves both);
the process's CPU per pair of commands, least and median of the blocks. Also, for scale,
the same two commands sent on a pooled connection directly (without the client's
retry wrapper and bookkeeping) and as one pipeline, which intake cannot use: the INCR
must follow the commit, the script must precede the body's parsing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402
from redis._parsers import _HiredisParser, _RESP3Parser  # noqa: E402
from redis.backoff import ExponentialBackoff  # noqa: E402
from redis.retry import Retry  # noqa: E402
from redis.utils import HIREDIS_AVAILABLE  # noqa: E402

from bench.common import REDIS  # noqa: E402
from review.intake.admission import _ADMIT  # noqa: E402

RATE, FLOOD, LIVE = "bench:rate", "bench:flood", "bench:live"


def client(parser: type) -> redis.Redis:
    return redis.Redis.from_url(
        REDIS,
        socket_timeout=5,
        socket_connect_timeout=2,
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 1),
        parser_class=parser,
    )


def as_intake(c: redis.Redis) -> None:
    now = time.time()
    _ADMIT(keys=[f"{RATE}:{int(now)}", FLOOD], args=[1000000, now, uuid.uuid4().hex, 60], client=c)
    c.incr(LIVE)


def on_connection(c: redis.Redis, sha: str) -> None:
    now = time.time()
    for command in (
        ("EVALSHA", sha, 2, f"{RATE}:{int(now)}", FLOOD, 1000000, now, uuid.uuid4().hex, 60),
        ("INCR", LIVE),
    ):
        conn = c.connection_pool.get_connection()
        try:
            conn.send_command(*command)
            conn.read_response()
        finally:
            c.connection_pool.release(conn)


def one_pipeline(c: redis.Redis, sha: str) -> None:
    now = time.time()
    with c.pipeline(transaction=False) as pipe:
        pipe.evalsha(sha, 2, f"{RATE}:{int(now)}", FLOOD, 1000000, now, uuid.uuid4().hex, 60)
        pipe.incr(LIVE)
        pipe.execute()


def cpu_us(fn: Callable[[], None], n: int) -> float:
    started = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - started) * 1e6 / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--per-block", type=int, default=1000)
    args = parser.parse_args()
    if not HIREDIS_AVAILABLE:
        raise SystemExit("hiredis is not installed: nothing to compare")
    python, hiredis = client(_RESP3Parser), client(_HiredisParser)
    sha = hiredis.script_load(_ADMIT.script)
    ways = {
        "client, Python parser": lambda: as_intake(python),
        "client, hiredis": lambda: as_intake(hiredis),
        "pooled connection, hiredis": lambda: on_connection(hiredis, sha),
        "one pipeline, hiredis (not intake's)": lambda: one_pipeline(hiredis, sha),
    }
    for fn in ways.values():
        cpu_us(fn, 200)  # warm-up: connections, the script loaded
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.blocks):
        for name, fn in ways.items():
            times[name].append(cpu_us(fn, args.per_block))
    print(f"CPU per intake's two commands, {args.blocks} blocks of {args.per_block}:")
    for name, values in times.items():
        print(
            f"  {name:<38} least {min(values):6.1f} us   median {statistics.median(values):6.1f} us"
        )
    hiredis.delete(FLOOD, LIVE)


if __name__ == "__main__":
    main()

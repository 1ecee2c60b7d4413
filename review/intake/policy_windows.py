"""Context at runtime: rules over a time window, counted in Redis (PROTOCOL.md section 17).

Two rule kinds look at what came before this deferral, not only at the deferral:

- `window_count`: how many deferrals the rule counts `per` something in the last
  `window` seconds, this one included (`at_least = 3`: the third refund to one
  customer in an hour; `at_most = 1`: a principal's first use of a tool);
- `window_sum`: the sum of a numeric argument (`sum = "amount"`) over the same, this
  one included, `over` a threshold.

`per` lists what a counter is kept for: `principal` (the verified identity when there is
one), `agent`, `tool`, `args.NAME` (a top-level argument's value). A rule counts the
deferrals its `when` admits (review/intake/policy_conditions.py); a deferral without
one of the `per` values is neither counted nor judged by that rule.

Cheap by construction: a counter per rule and `per` values is one Redis hash whose
fields are time buckets of window/60 seconds (at least one second), holding the count
and the sum. Reading every window rule's counters before scoring is one pipelined round
trip (HGETALL each), adding this deferral after it is stored is one more (HINCRBY,
HINCRBYFLOAT, EXPIRE, and HDEL of the buckets that fell out of the window). A window
is therefore sliding in steps of a bucket: a deferral may count for up to window/60
seconds longer than `window`. Only deferrals that were created count: a retry, a
refused request or a request that is still only being scored adds nothing.

Redis down: intake goes on. The window rules are not judged (they do not match), the
evaluation gets a 0-point factor `window_unavailable` naming them, and an `allow` is
withheld (the deferral is asked instead), since not everything was judged. Counts added
while Redis was down are lost, and counters start again from nothing when Redis loses
its data: after such a loss a window rule sees fewer deferrals than there were (a
"first use" rule fires again), never more.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from review import redis_keys
from review.identity import identity_key
from review.intake.policy_conditions import holds

if TYPE_CHECKING:
    from review.intake.policy import Facts, Policy, Rule
    from review.services import Services

log = logging.getLogger(__name__)

WINDOW_KINDS = ("window_count", "window_sum")
BUCKETS_PER_WINDOW = 60
MAX_WINDOW = 90 * 86400
UNAVAILABLE = "window_unavailable"


@dataclass(frozen=True)
class Counter:
    """One window rule's counter for this deferral."""

    rule: str
    key: str  # the Redis hash
    who: str  # the `per` values, for people: "customer C-1, principal alice@example.com"
    width: int  # seconds per bucket
    window: int
    amount: float  # what this deferral adds to the sum (window_sum), else 0


@dataclass(frozen=True)
class Counted:
    """A window rule's count and sum over the window, this deferral included."""

    count: int
    total: float
    who: str


def per_values(per: list[str], facts: Facts) -> list[tuple[str, str, str]] | None:
    """(name, value as counted, value as shown) for each `per` entry; None when the
    deferral lacks one. A principal is counted by review/identity.py's key, so look-alike
    spellings of one person share a counter."""
    out = []
    for name in per:
        if name == "principal":
            value: Any = facts.principal_identity or facts.principal_id
        elif name == "agent":
            value = facts.agent
        elif name == "tool":
            value = facts.tool
        else:  # args.NAME, checked by the loader
            value = facts.args.get(name.removeprefix("args."))
        if value is None or isinstance(value, dict | list) or value == "":
            return None
        counted = identity_key(str(value)) if name == "principal" else str(value)
        out.append((name.removeprefix("args."), counted, str(value)))
    return out


def counters_for(policy: Policy, facts: Facts) -> list[Counter]:
    """The counters of the policy's window rules that count this deferral."""
    found = []
    for rule in policy.window_rules:
        if rule.when and not holds(rule.when, facts):
            continue
        values = per_values(rule.params["per"], facts)
        if values is None:
            continue
        amount = 0.0
        if rule.kind == "window_sum":
            number = facts.args.get(rule.params["sum"])
            if not isinstance(number, int | float) or isinstance(number, bool):
                continue  # nothing to add up: this deferral is not judged by the rule
            amount = float(number)
        window = rule.params["window"]
        width = max(1, window // BUCKETS_PER_WINDOW)
        digest = hashlib.sha256(repr([v[:2] for v in values]).encode()).hexdigest()[:32]
        who = ", ".join(f"{name} {shown}" for name, _, shown in values)
        found.append(
            Counter(
                rule.id,
                redis_keys.policy_window(rule.id, width, digest),
                who,
                width,
                window,
                amount,
            )
        )
    return found


def read(
    svc: Services, counters: list[Counter], now: float | None = None
) -> dict[str, Counted] | None:
    """Each counter's count and sum over its window, this deferral included; None when
    Redis cannot answer (the window rules are then not judged)."""
    if not counters:
        return {}
    now = time.time() if now is None else now
    try:
        with svc.redis.client().pipeline(transaction=False) as pipe:
            for counter in counters:
                pipe.hgetall(counter.key)
            stored = pipe.execute()
    except redis.RedisError as exc:
        log.warning("policy windows not counted: redis unavailable (%s)", exc)
        return None
    out = {}
    for counter, fields in zip(counters, stored, strict=True):
        count, total = 1, counter.amount  # this deferral
        oldest = _bucket(now, counter.width) - counter.window // counter.width
        for name, value in fields.items():
            bucket, _, part = name.decode().partition(":")
            if not bucket.isdigit() or int(bucket) < oldest:
                continue
            if part == "sum":
                total += float(value)
            else:
                count += int(value)
        out[counter.rule] = Counted(count, total, counter.who)
    return out


def add(svc: Services, counters: list[Counter], now: float | None = None) -> None:
    """Count a deferral that was created; a Redis failure loses the count, nothing else."""
    if not counters:
        return
    now = time.time() if now is None else now
    try:
        client = svc.redis.client()
        stale = _stale_fields(client, counters, now)
        with client.pipeline(transaction=False) as pipe:
            for counter in counters:
                bucket = _bucket(now, counter.width)
                pipe.hincrby(counter.key, str(bucket), 1)
                if counter.amount:
                    pipe.hincrbyfloat(counter.key, f"{bucket}:sum", counter.amount)
                pipe.expire(counter.key, counter.window + 2 * counter.width)
                if stale.get(counter.key):
                    pipe.hdel(counter.key, *stale[counter.key])
            pipe.execute()
    except redis.RedisError as exc:
        log.warning("policy windows not counted: redis unavailable (%s)", exc)


def _stale_fields(client: redis.Redis, counters: list[Counter], now: float) -> dict[str, list[str]]:
    """Buckets that fell out of their window, pruned now and then (one in 16 adds)."""
    if int(now * 1000) % 16:
        return {}
    with client.pipeline(transaction=False) as pipe:
        for counter in counters:
            pipe.hkeys(counter.key)
        names = pipe.execute()
    out = {}
    for counter, fields in zip(counters, names, strict=True):
        oldest = _bucket(now, counter.width) - counter.window // counter.width
        old = [f.decode() for f in fields if int(f.decode().partition(":")[0] or 0) < oldest]
        if old:
            out[counter.key] = old
    return out


def _bucket(now: float, width: int) -> int:
    return int(now // width)


def match_window(rule: Rule, facts: Facts) -> dict[str, Any] | None:
    """The window rule's placeholders when it fires for these facts, else None."""
    counted = (facts.windows or {}).get(rule.id)
    if counted is None:
        return None
    p = rule.params
    values = {"count": counted.count, "who": counted.who, "window": shown_window(p["window"])}
    if rule.kind == "window_sum":
        if not counted.total > p["over"]:
            return None
        return {**values, "sum": p["sum"], "total": _number(counted.total), "over": p["over"]}
    if "at_least" in p and counted.count < p["at_least"]:
        return None
    if "at_most" in p and counted.count > p["at_most"]:
        return None
    return values


def unavailable_factor(policy: Policy) -> dict[str, Any]:
    ids = ", ".join(r.id for r in policy.rules if r.kind in WINDOW_KINDS)
    return {
        "rule": UNAVAILABLE,
        "points": 0,
        "detail": f"recent activity could not be counted (Redis down): {ids} not judged",
    }


def check_window_params(kind: str, params: dict[str, Any]) -> str | None:
    per = params.get("per", [])
    if not per or any(
        not isinstance(p, str)
        or not (p in ("principal", "agent", "tool") or (p.startswith("args.") and len(p) > 5))
        for p in per
    ):
        return "per must list principal, agent, tool or args.NAME"
    if not 1 <= params.get("window", 0) <= MAX_WINDOW:
        return f"window must be 1 to {MAX_WINDOW} seconds"
    if kind == "window_count" and not {"at_least", "at_most"} & set(params):
        return "window_count needs at_least or at_most"
    return None


def shown_window(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 2)

"""Template filters: readable JSON, time left, and line diffs of long strings.

Everything here returns plain text; templates autoescape it. Agent-supplied values are
never marked safe.
"""

from __future__ import annotations

import difflib
import json
from datetime import datetime
from typing import Any

from flask import Flask

from review.agents.registry import trace_link
from review.models import utcnow

MAX_SHOWN = 4000  # characters of one value shown before "… (N more)"


def pretty(value: Any) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    if len(text) > MAX_SHOWN:
        return text[:MAX_SHOWN] + f"\n… ({len(text) - MAX_SHOWN} more characters)"
    return text


def time_left(at: datetime | None, now: datetime | None = None) -> str:
    if at is None:
        return ""
    seconds = int((at - (now or utcnow())).total_seconds())
    if seconds <= 0:
        return "expired"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            whole, rest = divmod(seconds, size)
            smaller = {"d": ("h", 3600), "h": ("min", 60)}.get(unit)
            if smaller and rest >= smaller[1]:
                return f"{whole} {unit} {rest // smaller[1]} {smaller[0]}"
            return f"{whole} {unit}"
    return f"{seconds} s"


def is_long_text(change: dict[str, Any]) -> bool:
    old, new = change.get("old"), change.get("new")
    return (
        isinstance(old, str)
        and isinstance(new, str)
        and ("\n" in old or "\n" in new or max(len(old), len(new)) > 80)
    )


def line_diff(change: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, line) pairs of a unified diff between two long strings: kind is +, - or ' '."""
    old = change["old"].splitlines() or [change["old"]]
    new = change["new"].splitlines() or [change["new"]]
    if len(old) == 1 and len(new) == 1:  # one long line: compare word by word
        old, new = change["old"].split(" "), change["new"].split(" ")
    out = []
    for line in list(difflib.unified_diff(old, new, lineterm="", n=2))[2:][:400]:
        if line.startswith("@@"):
            out.append(("@", line))
        else:
            out.append((line[:1] or " ", line[1:]))
    return out


def init_app(app: Flask) -> None:
    app.jinja_env.filters["pretty"] = pretty
    app.jinja_env.filters["time_left"] = time_left
    app.jinja_env.tests["long_text"] = is_long_text
    app.jinja_env.globals["line_diff"] = line_diff
    app.jinja_env.globals["trace_link"] = trace_link

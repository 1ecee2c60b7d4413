"""Template filters: agent text with its hidden characters shown, readable JSON, time left.

`reveal` is how a page shows agent text: it escapes the text first, then replaces each
character that would change how the text reads without being seen (bidirectional
controls such as U+202E, which turns "\u202efdp.exe" into what reads "exe.pdf";
zero-width and other format characters; control characters other than newline and tab;
line and paragraph separators; Hangul fillers) with a visible marker,
`<span class="hidden-char" title="U+202E RIGHT-TO-LEFT OVERRIDE">⟨U+202E⟩</span>`.
The result is Markup built only from escaped text and our own markers, so it is never
raw agent text marked safe. Element content only: not for attribute values.
`pretty` is JSON for people, revealed the same way. `time_left` is plain text.

Nothing here diffs: line diffs of long texts are computed once, at intake
(review/intake/text_diff.py), and the card shows the stored lines.
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import datetime
from functools import lru_cache
from typing import Any

from flask import Flask
from markupsafe import Markup, escape

from review.agents.registry import trace_link
from review.models import utcnow

MAX_SHOWN = 4000  # characters of one value shown before "… (N more)"


# Anything but printable ASCII, newline, tab and CRLF may be hidden; `_shown_as` decides.
_CANDIDATE = re.compile(r"\r(?!\n)|[^\t\n\r\x20-\x7e]")
_HIDDEN_CATEGORIES = {"Cc", "Cf", "Zl", "Zp"}  # controls, format (bidi, zero-width), separators
_INVISIBLE_LETTERS = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u034f"}  # fillers, CGJ


_MARKER = Markup('<span class="hidden-char" title="{code} {name}">⟨{code}⟩</span>')


@lru_cache(maxsize=4096)
def _shown_as(char: str) -> Markup:
    if not is_hidden(char):
        return escape(char)  # an ordinary character: escaping leaves it as it is
    name = unicodedata.name(char, "control character")
    return _MARKER.format(code=f"U+{ord(char):04X}", name=name)  # format() escapes both


def is_hidden(char: str) -> bool:
    """A character a reader would not see as itself (what `reveal` marks)."""
    return unicodedata.category(char) in _HIDDEN_CATEGORIES or char in _INVISIBLE_LETTERS


def has_hidden(text: str) -> bool:
    return any(is_hidden(m.group()[0]) for m in _CANDIDATE.finditer(text))


def json_with_hidden_escaped(text: str) -> str:
    """JSON text with every hidden character written as its \\u escape: the same value
    once parsed (they can only stand inside strings), and nothing invisible in an editor."""
    return _CANDIDATE.sub(
        lambda m: json.dumps(m.group())[1:-1] if is_hidden(m.group()[0]) else m.group(), text
    )


def reveal(value: Any) -> Markup:
    """Agent text, escaped, with every hidden character replaced by a visible marker."""
    if value is None:
        return Markup("")
    escaped = escape(value)  # first escape, then put our markers between escaped pieces
    parts, start = [], 0
    for match in _CANDIDATE.finditer(escaped):
        # A match is never inside an entity such as &lt;: those are printable ASCII.
        parts += [escaped[start : match.start()], _shown_as(match.group())]
        start = match.end()
    if not parts:
        return escaped
    parts.append(escaped[start:])
    return Markup("").join(parts)


def pretty(value: Any) -> Markup:
    """JSON for people (cut at MAX_SHOWN characters), revealed."""
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    if len(text) > MAX_SHOWN:
        text = text[:MAX_SHOWN] + f"\n… ({len(text) - MAX_SHOWN} more characters)"
    return reveal(text)


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


def init_app(app: Flask) -> None:
    app.jinja_env.filters["reveal"] = reveal
    app.jinja_env.filters["pretty"] = pretty
    app.jinja_env.filters["time_left"] = time_left
    app.jinja_env.globals["trace_link"] = trace_link

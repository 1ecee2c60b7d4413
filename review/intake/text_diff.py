"""Line diffs of long texts, computed once at intake within the diff's deadline.

A long text is a changed string that has a newline or is longer than 80 characters.
Multi-line texts are compared line by line; one long line word by word (split at
spaces). The work is bounded three ways:

- the common head and tail are trimmed first, in linear time, so a small edit in a
  large text only diffs the part around it;
- what is left is diffed (difflib) only if it is at most `MAX_UNITS` lines or words on
  each side; otherwise the result is a summary ("N lines before and M after differ,
  too many to show");
- difflib's matcher looks at the clock each time it searches for a match, so a diff
  that would run past the deadline stops there and is stored as a summary saying so.
  One search is short: with fewer than 200 lines on the new side it is at most
  500 x 200 steps (about 20 ms), and from 200 lines on difflib's autojunk leaves out the
  lines that occur in more than 1% of the new side, the ones that make a search long.

What is stored is bounded too, and so is what a page renders: at most `MAX_SHOWN_LINES`
lines per text, each cut at `MAX_LINE_CHARS` characters, `MAX_SHOWN_CHARS` characters
in all; and a whole diff stores at most `DIFF_SHOWN_LINES` lines and `DIFF_SHOWN_CHARS`
characters of line diffs over all its texts (the caller passes what is left).
"""

from __future__ import annotations

import difflib
import time
from typing import Any

LONG_TEXT_CHARS = 80  # a single line longer than this is diffed word by word
MAX_UNITS = 500  # lines (or words) on each side of the part that differs
CONTEXT = 2  # unchanged lines shown around a change
MAX_SHOWN_LINES = 400
MAX_LINE_CHARS = 1000
MAX_SHOWN_CHARS = 64 * 1024
DIFF_SHOWN_LINES = 2000
DIFF_SHOWN_CHARS = 256 * 1024


def is_long_text(old: Any, new: Any) -> bool:
    return (
        isinstance(old, str)
        and isinstance(new, str)
        and ("\n" in old or "\n" in new or max(len(old), len(new)) > LONG_TEXT_CHARS)
    )


class OutOfTime(Exception):
    pass


class _ClockedMatcher(difflib.SequenceMatcher):
    """A SequenceMatcher that stops at a deadline: every match search looks at the clock."""

    def __init__(self, a: list[str], b: list[str], deadline: float):
        self.deadline = deadline
        # autojunk (difflib's default, as in unified_diff): a line in more than 1% of a
        # long text is matched only next to other matches, which keeps each search short.
        super().__init__(None, a, b, autojunk=True)

    def find_longest_match(self, alo=0, ahi=None, blo=0, bhi=None):
        if time.monotonic() > self.deadline:
            raise OutOfTime
        return super().find_longest_match(alo, ahi, blo, bhi)


def line_changes(
    old: str,
    new: str,
    deadline: float,
    max_lines: int = MAX_SHOWN_LINES,
    max_chars: int = MAX_SHOWN_CHARS,
) -> dict[str, Any]:
    """{"lines": [[tag, text], ...], "lines_truncated": bool, "lines_note": str|None}.

    Tags: "@" a hunk header, "-" a line of the old text, "+" of the new, " " unchanged.
    """
    max_lines, max_chars = min(max_lines, MAX_SHOWN_LINES), min(max_chars, MAX_SHOWN_CHARS)
    if max_lines <= 0 or max_chars <= 0:
        return _summary("not shown: this diff already shows as many text lines as it can")
    if "\n" in old or "\n" in new:
        a, b, unit = old.splitlines(), new.splitlines(), "line"
    else:
        a, b, unit = old.split(" "), new.split(" "), "word"
    head = _common_head(a, b)
    tail = _common_head(a[head:][::-1], b[head:][::-1])
    a_mid, b_mid = len(a) - head - tail, len(b) - head - tail
    if a_mid == 0 and b_mid == 0:
        return _summary("the texts differ only in line endings")
    where = f"from {unit} {head + 1}"
    if a_mid > MAX_UNITS or b_mid > MAX_UNITS:
        return _summary(
            f"{a_mid} {unit}s before and {b_mid} after differ ({where}): too many to show"
        )
    if time.monotonic() > deadline:
        return _summary(
            f"{a_mid} {unit}s before and {b_mid} after differ ({where}): "
            "the time budget ran out before they were compared"
        )
    start = head - min(CONTEXT, head)
    a_window = a[start : len(a) - tail + min(CONTEXT, tail)]
    b_window = b[start : len(b) - tail + min(CONTEXT, tail)]
    try:
        groups = list(_ClockedMatcher(a_window, b_window, deadline).get_grouped_opcodes(CONTEXT))
    except OutOfTime:
        return _summary(
            f"{a_mid} {unit}s before and {b_mid} after differ ({where}): "
            "too slow to compare within the time budget"
        )
    return _shown(_unified(groups, a_window, b_window, start), max_lines, max_chars)


def _common_head(a: list[str], b: list[str]) -> int:
    """How many items a and b share at the start; slices compare in C, a block at a time."""
    n, limit, step = 0, min(len(a), len(b)), 256
    while n + step <= limit and a[n : n + step] == b[n : n + step]:
        n += step
    while n < limit and a[n] == b[n]:
        n += 1
    return n


def _unified(groups: list, a: list[str], b: list[str], offset: int) -> list[list[str]]:
    lines = []
    for group in groups:
        (_, i1, _, j1, _), (_, _, i2, _, j2) = group[0], group[-1]
        # difflib.unified_diff's header: 1-based start and length of each side's range.
        lines.append(
            ["@", f"@@ -{_range(i1 + offset, i2 - i1)} +{_range(j1 + offset, j2 - j1)} @@"]
        )
        for tag, a1, a2, b1, b2 in group:
            if tag == "equal":
                lines.extend([" ", text] for text in a[a1:a2])
                continue
            lines.extend(["-", text] for text in a[a1:a2])
            lines.extend(["+", text] for text in b[b1:b2])
    return lines


def _range(start: int, length: int) -> str:
    first = start + 1 if length else start
    return str(first) if length == 1 else f"{first},{length}"


def _shown(lines: list[list[str]], max_lines: int, max_chars: int) -> dict[str, Any]:
    shown, chars, long_lines = [], 0, 0
    for tag, text in lines:
        if len(shown) >= max_lines or chars >= max_chars:
            break
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + f"… ({len(text) - MAX_LINE_CHARS} more characters)"
            long_lines += 1
        shown.append([tag, text])
        chars += len(text)
    notes = []
    if len(shown) < len(lines):
        notes.append(f"showing the first {len(shown)} of {len(lines)} diff lines")
    if long_lines:
        notes.append(f"lines longer than {MAX_LINE_CHARS} characters are cut")
    note = "; ".join(notes) or None
    return {"lines": shown, "lines_truncated": bool(notes), "lines_note": note}


def _summary(note: str) -> dict[str, Any]:
    return {"lines": [], "lines_truncated": True, "lines_note": note}

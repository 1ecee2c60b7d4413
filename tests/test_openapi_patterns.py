r"""The document's regular expressions mean the same in ECMA-262 (JSON Schema's dialect, run
here by the machine's Node.js, with and without the u flag) as in Python's re (jsonschema)
and as fastjsonschema rewrites them, for every code point that matters put at each place
of a valid example.

The code points that matter: the whole Basic Multilingual Plane (every pattern names its
characters with \xHH or \uHHHH escapes, all in that plane: checked below), and beyond it
the first and last code points of each plane: a character past U+FFFF is in no class
a pattern names, so it can only meet a negated class, the same way whichever it is.
"""

import json
import re
import shutil
import subprocess

import pytest
from fastjsonschema.draft04 import DOLLAR_FINDER

from review.api.openapi import openapi_document, patterns

NODE = shutil.which("node") or shutil.which("nodejs")
pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed")

# A string each pattern accepts, and the places where each code point takes the place of
# the example's character (at the end: is appended); a pattern added to the document needs
# one here.
EXAMPLES = {
    # in the scheme, the host, the path, at the end
    patterns.HTTP_URL: ("https://a.example/t?q=1#f", [1, 10, 18, 25]),
    patterns.NO_NUL: ("any text", [0, 4, 8]),
    patterns.AGENT_SLUG: ("billing-bot", [0, 5, 11]),
    patterns.DEFERRAL_ID: ("dfr_01JD0Q8W4T7Y8Z9A0B1C2D3E4F", [4, 30]),
    patterns.DIGEST: ("sha256:" + "0" * 64, [7, 71]),
    patterns.UNIX_SECONDS: ("1764460800", [0, 10]),
}
CODE_POINTS = [
    *range(0xD800),  # U+D800-U+DFFF are surrogates, not text: a body holding one is 400
    *range(0xE000, 0x10000),
    *(cp for plane in range(1, 17) for cp in (plane << 16, (plane << 16) | 0xFFFF)),
]

# For each pattern and each place in its example, the code points that, put there, make a
# string the pattern accepts; as ranges, computed in one pass over every code point.
NODE_SCRIPT = r"""
const {cases, codePoints} = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = [];
for (const {pattern, example, places, flags} of cases) {
  const re = new RegExp(pattern, flags);
  for (const at of places) {
    const before = example.slice(0, at), after = example.slice(at + 1);
    out.push(codePoints.filter((cp) => re.test(before + String.fromCodePoint(cp) + after)));
  }
}
process.stdout.write(JSON.stringify(out));
"""


def document_patterns(node=None) -> set[str]:
    node = openapi_document() if node is None else node
    found = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                found.add(value)
            else:
                found |= document_patterns(value)
    elif isinstance(node, list):
        for value in node:
            found |= document_patterns(value)
    return found


def python_accepts(regex: re.Pattern, example: str, at: int) -> list[int]:
    before, after = example[:at], example[at + 1 :]
    return [cp for cp in CODE_POINTS if regex.search(before + chr(cp) + after)]


def ecma_accepts(flags: str) -> dict[tuple[str, int], list[int]]:
    cases = [
        {"pattern": p, "example": example, "places": at, "flags": flags}
        for p, (example, at) in sorted(EXAMPLES.items())
    ]
    done = subprocess.run(
        [NODE, "-e", NODE_SCRIPT], input=json.dumps({"cases": cases, "codePoints": CODE_POINTS}),
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    keys = [(p, at) for p, (_, places) in sorted(EXAMPLES.items()) for at in places]
    return dict(zip(keys, json.loads(done.stdout), strict=True))


def test_every_pattern_in_the_document_has_an_example_it_accepts():
    assert document_patterns() == set(EXAMPLES)
    for pattern, (example, _) in EXAMPLES.items():
        assert re.search(pattern, example), pattern
        # Only ASCII, and escapes of the Basic Multilingual Plane (see the docstring).
        assert pattern.isascii() and not re.search(r"\\[uU]\{|\\U", pattern), pattern


@pytest.fixture(scope="module")
def ecma():
    return {flags: ecma_accepts(flags) for flags in ("u", "")}


@pytest.mark.parametrize("pattern", sorted(EXAMPLES), ids=lambda p: p[:24])
def test_each_pattern_means_the_same_in_ecma_262_and_python_over_every_code_point(ecma, pattern):
    example, places = EXAMPLES[pattern]
    as_python = re.compile(pattern)
    rewritten = DOLLAR_FINDER.sub(r"\\Z", pattern)  # what fastjsonschema compiles
    for at in places:
        expected = python_accepts(as_python, example, at)
        assert expected or at == len(example), (pattern, at)  # one fits in every place
        if rewritten != pattern:
            assert python_accepts(re.compile(rewritten), example, at) == expected, (pattern, at)
        for flags, accepted in ecma.items():
            assert accepted[pattern, at] == expected, (pattern, at, flags or "no flag")


def test_a_url_refuses_what_either_dialect_calls_white_space_and_every_control():
    url = re.compile(patterns.HTTP_URL)
    for cp in [*range(0x21), *range(0x7F, 0xA1), 0x1680, 0x2028, 0x2029, 0x3000, 0xFEFF]:
        assert not url.search(f"https://a.example/{chr(cp)}x"), hex(cp)
        assert not url.search(f"https://a.example/x{chr(cp)}"), hex(cp)
    assert url.search("https://a.example/é/\U0001f600?q=1#f")
    assert not url.search("https://a.example/x\n")  # `$` would have let this through

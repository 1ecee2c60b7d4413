"""A big policy for the benchmarks: the default policy plus generated rules, up to N.

The generated rules are the kinds a team adds for its own tools, cycling through every
rule kind (tools of other services, argument thresholds and values, labels, principals,
the diff's fields and effects), with names that the benchmark's deferrals do not match:
each one is evaluated in full, as most rules of a real policy are for most deferrals.
Two deciding rules are added for the allow/deny timings (bench/policy_allow.py).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "config" / "policy.toml"

DECIDING = """
[[rule]]
id = "read_only"
kind = "tool"
match = ["files.get"]
points = 0
outcome = "allow"
detail = "{tool} only reads"

[[rule]]
id = "no_public_acl"
kind = "argument_value"
keys = ["acl"]
values = ["public-read"]
points = 10
outcome = "deny"
detail = "{key} {value}"
"""

TEMPLATES = (
    'kind = "tool"\nmatch = ["svc{i}.*", "*.op{i}_*"]\ndetail = "{{tool}}"',
    'kind = "argument_over"\nkeys = ["limit{i}", "quota{i}"]\nthreshold = {i}\n'
    'detail = "{{key}} {{value}}"',
    'kind = "argument_value"\nkeys = ["mode{i}"]\nvalues = ["unsafe{i}"]\nlike = ["*x{i}*"]\n'
    'detail = "{{key}} {{value}}"',
    'kind = "external_address"\nkeys = ["notify{i}"]\ninternal_domains = ["corp{i}.example"]\n'
    'detail = "{{address}}"',
    'kind = "list_size"\nkeys = ["batch{i}"]\nover = {i}\ndetail = "{{count}}"',
    'kind = "label"\nkey = "tier{i}"\nvalues = ["gold", "platinum"]\ndetail = "{{value}}"',
    'kind = "principal"\nmatch = ["svc-{i}:*"]\ndetail = "{{principal}}"',
    'kind = "diff_field"\nfields = ["secret{i}", "token{i}"]\ndetail = "{{path}}"',
    'kind = "field_value"\nfields = ["*state{i}*"]\nto = ["public", "open"]\ndetail = "{{path}}"',
    'kind = "number_lowered"\nfields = ["*keep{i}*"]\nto_at_most = 0\ndetail = "{{path}}"',
    'kind = "number_raised"\nfields = ["*size{i}*"]\nby_ratio = 2\ndetail = "{{path}}"',
    'kind = "list_shrunk"\nfields = ["*members{i}*"]\ndetail = "{{path}}"',
    'kind = "key_removed"\nfields = ["*guard{i}*"]\ndetail = "{{path}}"',
    'kind = "turned_off"\nfields = ["*check{i}*"]\ndetail = "{{path}}"',
)


def generated_policy(total: int = 200) -> str:
    """The default policy, the two deciding rules, and generated rules: `total` in all."""
    text = DEFAULT.read_text(encoding="utf-8") + DECIDING
    have = len(tomllib.loads(text)["rule"])
    rules = []
    for i in range(max(0, total - have)):
        body = TEMPLATES[i % len(TEMPLATES)].format(i=i)
        rules.append(f'\n[[rule]]\nid = "generated_{i}"\npoints = 1\n{body}\n')
    return text + "".join(rules)


def decided_policy() -> str:
    """The default policy with the two deciding rules only."""
    return DEFAULT.read_text(encoding="utf-8") + DECIDING

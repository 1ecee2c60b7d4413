"""Plain states (objects of scalars) are diffed without deepdiff, exactly as deepdiff would."""

import random

import pytest

from review.intake import diffing
from review.intake.diffing import compute_diff, plain_changes

LEAVES = [0, 1, 1.0, -0.0, 740, 2**70, 0.1, True, False, None, "", "paid", "a b", "ü/~x", "1"]
KEYS = ["a", "b", "status", "x/y", "m~n", "Ünï", "", "_p", "__p"]


def document(rng: random.Random, depth: int = 0) -> dict:
    out = {}
    for key in rng.sample(KEYS, rng.randint(0, len(KEYS))):
        out[key] = (
            document(rng, depth + 1) if depth < 2 and rng.random() < 0.25 else rng.choice(LEAVES)
        )
    return out


def mutated(rng: random.Random, doc: dict) -> dict:
    out = {}
    for key, value in doc.items():
        roll = rng.random()
        if roll < 0.15:
            continue  # removed
        if isinstance(value, dict) and roll < 0.8:
            out[key] = mutated(rng, value)
        elif roll < 0.45:
            out[key] = rng.choice(LEAVES + [{"n": 1}])
        else:
            out[key] = value
    for key in rng.sample(KEYS, 2):
        if key not in out and rng.random() < 0.5:
            out[key] = rng.choice(LEAVES)
    return out


def by_deepdiff(before, after, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(diffing, "plain_changes", lambda *_: None)
        return compute_diff(before, after, max_changes=200, max_ms=1000)


@pytest.mark.parametrize("seed", range(40))
def test_a_plain_diff_is_the_one_deepdiff_gives(seed, monkeypatch):
    rng = random.Random(seed)
    for _ in range(25):
        before = document(rng)
        after = mutated(rng, before)
        assert plain_changes(before, after, 200) is not None
        fast = compute_diff(before, after, max_changes=200, max_ms=1000)
        assert fast == by_deepdiff(before, after, monkeypatch), (before, after)


def test_a_changed_long_line_gets_its_line_diff_either_way(monkeypatch):
    before, after = {"body": "x" * 100}, {"body": "y" * 100}
    assert compute_diff(before, after, max_changes=200, max_ms=1000) == by_deepdiff(
        before, after, monkeypatch
    )
    assert "lines" in compute_diff(before, after, max_changes=200, max_ms=1000)["changes"][0]


@pytest.mark.parametrize(
    "before,after",
    [
        ({"a": [1]}, {"a": [2]}),  # lists: compared position by position by deepdiff
        ({"a": "one\ntwo"}, {"a": "one\nthree"}),  # multi-line text: digests and line diffs
        ([1], [2]),
        ({"k": {f"f{i}": i for i in range(300)}}, {}),  # bigger than the plain walk takes
    ],
)
def test_what_is_not_plain_goes_to_deepdiff(before, after):
    assert plain_changes(before, after, 200) is None


def test_more_changes_than_kept_go_to_deepdiff_which_counts_them():
    before = {f"k{i}": i for i in range(20)}
    after = {f"k{i}": i + 1 for i in range(20)}
    assert plain_changes(before, after, 5) is None
    d = compute_diff(before, after, max_changes=5, max_ms=1000)
    assert d["count"] == 20 and len(d["changes"]) == 5 and d["truncated"] is True

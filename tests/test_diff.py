"""The before/after diff: paths, old and new values, added and removed; bounded and honest."""

import pytest

from review.intake.diffing import ABSENT, compute_diff


def diff(before, after, max_changes=200, max_ms=250):
    return compute_diff(before, after, max_changes=max_changes, max_ms=max_ms)


def test_changes_additions_and_removals_come_as_json_pointers():
    d = diff(
        {"a": 1, "b": {"c": [1, 2]}, "gone": True, "x/y": "s"},
        {"a": 2, "b": {"c": [1, 2, 3]}, "new": "v", "x/y": 5},
    )
    assert d["truncated"] is False and d["count"] == 5
    assert d["changes"] == [
        {"op": "changed", "path": "/a", "old": 1, "new": 2},
        {"op": "added", "path": "/b/c/2", "old": None, "new": 3},
        {"op": "removed", "path": "/gone", "old": True, "new": None},
        {"op": "added", "path": "/new", "old": None, "new": "v"},
        {"op": "type_changed", "path": "/x~1y", "old": "s", "new": 5},
    ]


@pytest.mark.parametrize("key", ["__proto__", "__admin", "__"])
def test_a_change_under_a_key_starting_with_two_underscores_shows(key):
    plain = compute_diff({key: False}, {key: True}, max_changes=10, max_ms=1000)
    nested = compute_diff({"a": [{key: 1}]}, {"a": [{key: 2}]}, max_changes=10, max_ms=1000)
    assert [c["path"] for c in plain["changes"]] == [f"/{key}"]
    assert [c["path"] for c in nested["changes"]] == [f"/a/0/{key}"]


def test_identical_states_have_no_changes():
    assert diff({"a": [1, {"b": None}]}, {"a": [1, {"b": None}]})["changes"] == []


def test_only_after_or_only_before_is_one_whole_change():
    assert diff(ABSENT, {"a": 1})["changes"] == [
        {"op": "added", "path": "", "old": None, "new": {"a": 1}}
    ]
    assert diff({"a": 1}, ABSENT)["changes"][0]["op"] == "removed"
    assert diff(ABSENT, ABSENT) == {
        "changes": [],
        "count": 0,
        "truncated": False,
        "note": "no before/after given",
    }


def test_lists_are_compared_by_position_not_matched_out_of_order():
    d = diff({"l": [1, 2, 3]}, {"l": [3, 2, 1]})
    assert [c["path"] for c in d["changes"]] == ["/l/0", "/l/2"]


def test_over_the_change_cap_the_diff_says_it_is_truncated():
    d = diff({"l": list(range(50))}, {"l": list(range(1, 51))}, max_changes=10)
    assert d["truncated"] is True and len(d["changes"]) == 10 and d["count"] == 50
    assert "showing 10 of 50 changes" in d["note"]


def test_a_huge_reordered_list_stops_at_its_budget_and_says_so():
    rows = [{"id": i, "name": f"row {i}", "tags": ["a", "b"]} for i in range(5000)]
    d = diff({"rows": rows}, {"rows": rows[::-1]}, max_changes=200, max_ms=250)
    assert d["truncated"] is True and len(d["changes"]) <= 200
    assert "budget" in d["note"] or "showing" in d["note"]


def test_the_time_budget_cuts_the_walk_short():
    big = {f"k{i}": {"v": i, "w": [i] * 5} for i in range(20000)}
    changed = {k: {"v": -v["v"], "w": v["w"]} for k, v in big.items()}
    d = diff(big, changed, max_changes=100000, max_ms=1)
    assert d["truncated"] is True and "time budget" in d["note"]


def test_the_stored_diff_is_what_the_api_returns(make_app, make_agent):
    from review.models import Deferral
    from tests.helpers import refund

    app = make_app(diff_max_ms=60_000)  # a stalled machine must not cut this walk short
    svc = app.extensions["countersign"]
    agent = make_agent().on(app)
    body = refund(before={"rows": list(range(300))}, after={"rows": list(range(1, 301))})
    created = agent.defer(body).get_json()
    d = created["diff"]
    assert d["truncated"] is True and len(d["changes"]) == svc.settings.diff_max_changes
    assert d["note"] == "diff truncated: showing 200 of 300 changes"
    with svc.db.read() as session:
        assert session.get(Deferral, created["id"]).diff == d

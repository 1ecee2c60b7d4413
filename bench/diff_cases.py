"""How long the bounded diff holds a request on adversarial before/after pairs.

    .venv/bin/python bench/diff_cases.py

Issue 3 bound: a 5,000-row list reversed must not hold a request for more than a
second. Each case is timed with the default budget (250 ms, 200 changes), next to the
time json.loads takes to parse the same pair (the baseline every request pays anyway).
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from review.intake.diffing import compute_diff  # noqa: E402


def cases():
    rows = [{"id": i, "name": f"row {i}", "tags": ["a", "b"]} for i in range(5000)]
    yield "5,000 dict rows reversed", {"rows": rows}, {"rows": rows[::-1]}
    ints = list(range(5000))
    yield "5,000 integers reversed", {"rows": ints}, {"rows": ints[::-1]}
    shuffled = list(range(50000))
    random.Random(1).shuffle(shuffled)
    yield "50,000 integers shuffled", {"rows": list(range(50000))}, {"rows": shuffled}
    strs = [f"s{i}" for i in range(60000)]
    yield "60,000 strings reversed", {"rows": strs}, {"rows": strs[::-1]}
    yield "150,000 integers vs 10", {"rows": list(range(150000))}, {"rows": list(range(10))}
    keyed = {f"k{i}": {"v": i} for i in range(20000)}
    yield "20,000 keys all changed", keyed, {k: {"v": -v["v"]} for k, v in keyed.items()}


def main() -> None:
    print(f"{'case':<28} {'body':>8} {'parse':>8} {'diff':>8}  result")
    for name, before, after in cases():
        text = json.dumps({"before": before, "after": after})
        start = time.perf_counter()
        json.loads(text)
        parse = time.perf_counter() - start
        start = time.perf_counter()
        diff = compute_diff(before, after, max_changes=200, max_ms=250)
        took = time.perf_counter() - start
        print(
            f"{name:<28} {len(text) / 1024:6.0f}KB {parse * 1000:6.0f}ms {took * 1000:6.0f}ms"
            f"  {len(diff['changes'])} kept of {diff['count']}; {diff['note']}"
        )


if __name__ == "__main__":
    main()

"""SQLite: the pages an intake writes, as WAL frames, and the b-tree each belongs to.

    .venv/bin/python bench/wal_frames.py [--intakes 100] [--tree DIR]

In-process intakes (bench/cpu.py intake_app, signed_intakes) on a fresh SQLite file with
both checkpoints off (review/wal_checkpoints.py's thread and SQLite's own), 20 to warm;
then the WAL is truncated and `--intakes` more are taken. Each frame of the WAL is one
page written by a commit; its page number is mapped to its table or index (the `dbstat`
table). Printed per intake. `--tree DIR` counts another checkout (a `git archive` of
main). docs/SCALING.md, "Fewer index writes per intake", has its figures.
"""

from __future__ import annotations

import argparse
import collections
import os
import sqlite3
import struct
import sys
import tempfile
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--intakes", type=int, default=100)
parser.add_argument("--tree", default=str(Path(__file__).resolve().parent.parent))
args = parser.parse_args()
sys.path.insert(0, args.tree)

from review import wal_checkpoints  # noqa: E402

wal_checkpoints.EVERY_COMMITS = 10**9  # the background checkpoint never wakes
wal_checkpoints.INLINE_PAGES = 0  # PRAGMA wal_autocheckpoint=0: SQLite's own is off

from bench.cpu import intake_app, signed_intakes  # noqa: E402

WAL_HEADER, FRAME_HEADER = 32, 24


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cs-wal-") as folder:
        path = os.path.join(folder, "bench.db")
        app, svc, secret = intake_app(f"sqlite:///{path}", folder)
        statuses: list[str] = []

        def serve(environs: list[dict]) -> None:
            for env in environs:
                for _ in app.wsgi_app(env, lambda s, h, exc_info=None: statuses.append(s)):
                    pass
                if not statuses[-1].startswith("202"):
                    raise SystemExit(f"intake answered {statuses[-1]}")

        serve(signed_intakes(secret, 20))
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        serve(signed_intakes(secret, args.intakes))
        wal = Path(path + "-wal").read_bytes()
        page_size = struct.unpack(">I", wal[8:12])[0]
        step = page_size + FRAME_HEADER
        frames = (len(wal) - WAL_HEADER) // step
        pages = [
            struct.unpack(">I", wal[WAL_HEADER + i * step : WAL_HEADER + i * step + 4])[0]
            for i in range(frames)
        ]
        owner = dict(db.execute("SELECT pageno, name FROM dbstat").fetchall())
        per = collections.Counter(owner.get(p, f"page {p}") for p in pages)
        db.close()
        svc.close()
    n = args.intakes
    print(f"{args.tree}: {frames / n:.1f} WAL frames per intake ({frames} for {n} intakes)")
    for name, count in per.most_common():
        print(f"  {count / n:5.2f}  {name}")


if __name__ == "__main__":
    main()

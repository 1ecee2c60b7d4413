"""Paused agent runs on disk, for adapters whose framework can save a run and resume it.

One JSON file per run, written whole and then renamed into place. Nothing here imports a
framework: the state is whatever JSON the framework made of its run.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class SavedRun:
    """A paused run: its RunState, the deferral of each interrupted call, what ran since."""

    run_id: str
    state: dict[str, Any]  # the framework's own JSON of the run (RunState.to_json())
    deferrals: dict[str, str] = field(default_factory=dict)  # call id -> deferral id
    ran: dict[str, dict[str, Any]] = field(default_factory=dict)  # call id -> outcome, result


class RunStore:
    """Paused runs, one JSON file each in `directory`, each written whole and then renamed
    into place (so a crash leaves the old file or the new one, never half of one)."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, run_id: str) -> Path:
        name = hashlib.sha256(run_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return self.directory / f"run-{name}.json"

    def load(self, run_id: str) -> SavedRun | None:
        try:
            text = self._path(run_id).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return SavedRun(**json.loads(text))

    def save(self, saved: SavedRun) -> None:
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".run-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(asdict(saved), out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self._path(saved.run_id))

    def remove(self, run_id: str) -> None:
        self._path(run_id).unlink(missing_ok=True)

    def run_ids(self) -> list[str]:
        """The runs waiting for decisions, oldest file first."""
        paths = sorted(self.directory.glob("run-*.json"), key=lambda p: p.stat().st_mtime)
        return [json.loads(p.read_text(encoding="utf-8"))["run_id"] for p in paths]

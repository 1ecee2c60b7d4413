"""Canaries do not count towards their agent's pending cap.

`agents.undecided` (0007) is what intake compares with COUNTERSIGN_AGENT_MAX_PENDING.
Its triggers counted every undecided deferral, canaries included, so an admin seeding
canaries under a real agent's name could make that agent's own deferrals be refused
for "too many pending" (429) although the agent had sent none of them. The triggers
now count only deferrals with `canary` NULL (a canary's kind is set when it is seeded
and never changes), and the count is taken again. The agent's page shows the same
number, so its owners do not see canaries there either.

Revision ID: 0026
Revises: 0025
Create Date: 2026-11-30
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

COUNT = """
UPDATE agents SET undecided = (
  SELECT count(*) FROM deferrals
  WHERE deferrals.agent_id = agents.id AND deferrals.status IN ('pending', 'in_review')
    AND deferrals.canary IS NULL
)
"""
# 0007's triggers with "and not a canary" added (countersign_count_undecided unchanged).
PG_TRIGGERS = (
    """CREATE TRIGGER deferrals_undecided_insert AFTER INSERT ON deferrals FOR EACH ROW
    WHEN (NEW.status IN ('pending', 'in_review') AND NEW.canary IS NULL)
    EXECUTE FUNCTION countersign_count_undecided()""",
    """CREATE TRIGGER deferrals_undecided_delete AFTER DELETE ON deferrals FOR EACH ROW
    WHEN (OLD.status IN ('pending', 'in_review') AND OLD.canary IS NULL)
    EXECUTE FUNCTION countersign_count_undecided()""",
    """CREATE TRIGGER deferrals_undecided_status AFTER UPDATE OF status ON deferrals FOR EACH ROW
    WHEN ((OLD.status IN ('pending', 'in_review')) <> (NEW.status IN ('pending', 'in_review'))
          AND NEW.canary IS NULL)
    EXECUTE FUNCTION countersign_count_undecided()""",
)
SQLITE_TRIGGERS = (
    """CREATE TRIGGER deferrals_undecided_insert AFTER INSERT ON deferrals
    WHEN NEW.status IN ('pending', 'in_review') AND NEW.canary IS NULL
    BEGIN UPDATE agents SET undecided = undecided + 1 WHERE id = NEW.agent_id; END""",
    """CREATE TRIGGER deferrals_undecided_delete AFTER DELETE ON deferrals
    WHEN OLD.status IN ('pending', 'in_review') AND OLD.canary IS NULL
    BEGIN UPDATE agents SET undecided = undecided - 1 WHERE id = OLD.agent_id; END""",
    """CREATE TRIGGER deferrals_undecided_status AFTER UPDATE OF status ON deferrals
    WHEN (OLD.status IN ('pending', 'in_review')) <> (NEW.status IN ('pending', 'in_review'))
      AND NEW.canary IS NULL
    BEGIN
      UPDATE agents
      SET undecided = undecided
        + (CASE WHEN NEW.status IN ('pending', 'in_review') THEN 1 ELSE -1 END)
      WHERE id = NEW.agent_id;
    END""",
)


def _revision_0007() -> ModuleType:
    """Migration 0007 itself, for its triggers and count (downgrade puts them back)."""
    path = Path(__file__).with_name("0007_undecided_count.py")
    spec = importlib.util.spec_from_file_location("countersign_0007", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _replace(triggers: tuple[str, ...], count: str) -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in _revision_0007().TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON deferrals" if postgres else ""))
    for statement in triggers:
        op.execute(statement)
    op.execute(count)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    _replace(PG_TRIGGERS if postgres else SQLITE_TRIGGERS, COUNT)


def downgrade() -> None:
    before = _revision_0007()
    postgres = op.get_bind().dialect.name == "postgresql"
    _replace(before.PG_TRIGGERS if postgres else before.SQLITE_TRIGGERS, before.COUNT)

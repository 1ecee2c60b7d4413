"""Each agent's count of undecided deferrals, kept by the database.

Intake refuses an agent over its pending cap (COUNTERSIGN_AGENT_MAX_PENDING). Counting
the agent's pending and in_review deferrals on every request costs time in proportion
to how many there are; `agents.undecided` is the same number, kept by triggers on
`deferrals` (insert, delete, and an update that moves a deferral into or out of the
undecided statuses), so every code path that changes a status keeps it right and
intake reads one row.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TRIGGERS = (
    "deferrals_undecided_insert",
    "deferrals_undecided_delete",
    "deferrals_undecided_status",
)
COUNT = """
UPDATE agents SET undecided = (
  SELECT count(*) FROM deferrals
  WHERE deferrals.agent_id = agents.id AND deferrals.status IN ('pending', 'in_review')
)
"""
PG_FUNCTION = """
CREATE FUNCTION countersign_count_undecided() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    UPDATE agents SET undecided = undecided - 1 WHERE id = OLD.agent_id;
  ELSIF NEW.status IN ('pending', 'in_review') THEN
    UPDATE agents SET undecided = undecided + 1 WHERE id = NEW.agent_id;
  ELSE
    UPDATE agents SET undecided = undecided - 1 WHERE id = NEW.agent_id;
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql
"""
PG_TRIGGERS = (
    """CREATE TRIGGER deferrals_undecided_insert AFTER INSERT ON deferrals FOR EACH ROW
    WHEN (NEW.status IN ('pending', 'in_review'))
    EXECUTE FUNCTION countersign_count_undecided()""",
    """CREATE TRIGGER deferrals_undecided_delete AFTER DELETE ON deferrals FOR EACH ROW
    WHEN (OLD.status IN ('pending', 'in_review'))
    EXECUTE FUNCTION countersign_count_undecided()""",
    """CREATE TRIGGER deferrals_undecided_status AFTER UPDATE OF status ON deferrals FOR EACH ROW
    WHEN ((OLD.status IN ('pending', 'in_review')) <> (NEW.status IN ('pending', 'in_review')))
    EXECUTE FUNCTION countersign_count_undecided()""",
)
SQLITE_TRIGGERS = (
    """CREATE TRIGGER deferrals_undecided_insert AFTER INSERT ON deferrals
    WHEN NEW.status IN ('pending', 'in_review')
    BEGIN UPDATE agents SET undecided = undecided + 1 WHERE id = NEW.agent_id; END""",
    """CREATE TRIGGER deferrals_undecided_delete AFTER DELETE ON deferrals
    WHEN OLD.status IN ('pending', 'in_review')
    BEGIN UPDATE agents SET undecided = undecided - 1 WHERE id = OLD.agent_id; END""",
    """CREATE TRIGGER deferrals_undecided_status AFTER UPDATE OF status ON deferrals
    WHEN (OLD.status IN ('pending', 'in_review')) <> (NEW.status IN ('pending', 'in_review'))
    BEGIN
      UPDATE agents
      SET undecided = undecided
        + (CASE WHEN NEW.status IN ('pending', 'in_review') THEN 1 ELSE -1 END)
      WHERE id = NEW.agent_id;
    END""",
)


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("undecided", sa.Integer(), nullable=False, server_default="0"))
    op.execute(COUNT)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for statement in PG_TRIGGERS:
            op.execute(statement)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON deferrals")
        op.execute("DROP FUNCTION IF EXISTS countersign_count_undecided()")
    else:
        for name in TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("undecided")

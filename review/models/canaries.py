"""Canary deferrals: known-bad test items an admin seeds for reviewers (review/canaries/)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from review.models.base import Base, UTCDateTime


class Canary(Base):
    """Who seeded a canary deferral and what became of it (review/canaries/)."""

    __tablename__ = "canaries"
    __table_args__ = (
        # The admin page's list, newest first.
        Index("ix_canaries_seeded_at", "seeded_at"),
        # Catch rates per reviewer over a window: WHERE decided_at >= ? GROUP BY decided_by.
        Index("ix_canaries_decided_at", "decided_at", "decided_by"),
    )

    deferral_id: Mapped[str] = mapped_column(ForeignKey("deferrals.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    seeded_by: Mapped[str] = mapped_column(String(64))
    seeded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(16))  # "caught", "missed"; None: open
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    seconds_in_view: Mapped[float | None] = mapped_column(Float)

"""The people who log in: reviewers, admins and auditors."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import Boolean, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from review.models.base import Base, UTCDateTime, utcnow

ROLES = ("admin", "reviewer", "auditor")


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        # Single sign-on finds its user by the provider's identity (migration 0018).
        UniqueConstraint("sso_issuer", "sso_subject", name="uq_users_sso_identity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Every browser session of the user carries this; a new one (logout, password
    # change, disabling) ends them all. Empty never matches (migration 0009).
    session_token: Mapped[str] = mapped_column(String(64), default=new_session_token)
    # Set with each login's audit event (migration 0015); None: not since that upgrade.
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set for a user made by single sign-on (review/sso_accounts.py): who they are at
    # the OpenID provider. Such a user has no password here.
    sso_issuer: Mapped[str | None] = mapped_column(String(255))
    sso_subject: Mapped[str | None] = mapped_column(String(255))
    # Single-key shortcuts on the reviewer pages (static/review.js); off for people whose
    # speech input or tremor fires them by accident (WCAG 2.1.4, PROTOCOL.md section 16).
    keyboard_shortcuts: Mapped[bool] = mapped_column(Boolean, default=True)

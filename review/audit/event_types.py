"""Every event type the audit log holds, in one place.

The /audit page offers these in its event-type filter instead of asking the log which
types it holds (a GROUP BY over every event on every page view). Whoever writes a new
type adds it here; tests/test_page_costs.py fails when a type written anywhere in review/
or queue/ (or by the flows it drives) is missing.
"""

from __future__ import annotations

from review.models import TERMINAL_STATUSES

DEFERRAL = (
    "deferral.received",  # intake (also written by PostgreSQL's intake function, 0008)
    "deferral.evaluated",
    "deferral.claimed",
    "deferral.released",
    "deferral.lease_lapsed",
    "deferral.approval_1_of_2",  # before migration 0020; now approval_recorded
    "deferral.approval_recorded",  # an approval short of the quorum (reviewing/approvals.py)
    "deferral.snoozed",  # put back "not before T" (review/reviewing/set_aside.py)
    "deferral.handed_over",  # to a named reviewer or a group (review/reviewing/set_aside.py)
    "deferral.edited",  # a reviewer approved edited arguments (review/reviewing/edits.py)
    "deferral.consumed",  # an AAP client claimed the approval for its one run
    # How a deferral ends (review/reviewing/ending.py writes f"deferral.{outcome}").
    *(f"deferral.{status}" for status in TERMINAL_STATUSES),
)
AGENT = (
    "agent.created",
    "agent.updated",
    "agent.secret_rotated",
    "agent.aap_token_issued",
    "agent.deactivated",
    "agent.killed",
    "agent.revived",
    "agent.breaker_tripped",
    "agent.flip_refused",
    "agents.stop_all",
    "agents.revive_all",
)
AAP = ("aap.instance_registered",)
CALLBACK = ("callback.attempted", "callback.redelivery_requested")
EXECUTION = ("execution.reported", "execution.violation", "execution.violation_repeated")
PEOPLE = (
    "user.created",
    "user.password_changed",
    "user.role_changed",
    "user.disabled",
    "user.enabled",
    "user.logged_out",
    "user.settings_changed",
    "user.email_changed",  # users set-email
    "login.succeeded",
    "login.failed",
    "login.throttled",
    "login.sso_refused",  # review/web/sso.py
)
REQUESTS = ("request.refused", "request.refused_repeated")
GROUPS = ("group.created", "group.member_added", "group.member_removed")  # review/groups.py
SECRETS = ("secrets.resealed",)
NOTIFICATIONS = ("notification.retry_requested",)  # review/notifications/delivery.py
# Known-bad test deferrals (review/canaries/): seeded by an admin, caught or missed.
CANARIES = ("canary.seeded", "canary.caught", "canary.missed")

EVENT_TYPES: tuple[str, ...] = tuple(
    sorted(
        {
            *DEFERRAL,
            *AGENT,
            *AAP,
            *CALLBACK,
            *EXECUTION,
            *PEOPLE,
            *REQUESTS,
            *GROUPS,
            *SECRETS,
            *NOTIFICATIONS,
            *CANARIES,
        }
    )
)

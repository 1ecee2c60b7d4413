"""The kinds of notification message (stored on each row, and the webhook's `type`)."""

WAITING = "deferral.waiting"  # a new deferral at or above COUNTERSIGN_NOTIFY_LEVEL (tier 0)
ESCALATED = "deferral.escalated"  # still unclaimed after COUNTERSIGN_ESCALATE_AFTER (tier 1)
EXPIRING = "deferral.expiring"  # undecided, COUNTERSIGN_NOTIFY_REMIND_BEFORE before expiry
DECIDED = "deferral.decided"  # it ended: channels update what they sent (the hook)
DIGEST = "digest"  # a person's daily summary of what waits
AGENT_KILLED = "agent.killed"  # to the agent's owners
AGENT_REVIVED = "agent.revived"

ABOUT_WAITING = (WAITING, ESCALATED, EXPIRING)  # moot once the deferral has ended
ALL = (WAITING, ESCALATED, EXPIRING, DECIDED, DIGEST, AGENT_KILLED, AGENT_REVIVED)

"""Every Redis key and channel the service uses, with what it holds and who writes it.

Redis holds nothing the service cannot lose: the job queue (rq's own keys), caches,
counters and wake-ups. A lost key costs latency or a count, never a decision.
"""

# --- agents ------------------------------------------------------------------------------


def agent_status(slug: str) -> str:
    """The agent's status object as JSON, for the status endpoint (PROTOCOL.md 4.5)."""
    return f"countersign:agent-status:{slug}"


STATUS_TTL_SECONDS = 10

# Pub/sub channel: the slug of each agent whose kill switch flipped (published after its
# commit and after its status above was rewritten) or whose signing secrets or settings
# changed (rotation, deactivation, breaker overrides; review/callbacks/wakeups.py); every
# web process's status cache (review/agents/status_cache.py) drops its copy, and with it
# the process's cached signer (SecretCache, review/agents/registry.py).
AGENT_STATUS_CHANNEL = "countersign:agent-status-changed"


def rate(slug: str, second: int) -> str:
    """The agent's requests in one second (a counter), for the rate limit."""
    return f"countersign:rate:{slug}:{second}"


def flood(slug: str) -> str:
    """The agent's recent deferral requests (webhook-ids by arrival), for the flood breaker."""
    return f"countersign:breaker:flood:{slug}"


def rejections(slug: str) -> str:
    """Reviewers' rejections of the agent in a row, for the rejection breaker."""
    return f"countersign:breaker:rejections:{slug}"


def policy_window(rule: str, width: int, values: str) -> str:
    """A window rule's counter for one set of `per` values: a hash of time buckets (each
    `width` seconds) to counts and sums (review/intake/policy_windows.py)."""
    return f"countersign:policy-window:{rule}:{width}:{values}"


# --- wake-ups and delivery ---------------------------------------------------------------

# Pub/sub channel: the id of each deferral that ended, published after its commit; every
# web process's long-poll listener wakes the requests waiting for it.
ENDED_CHANNEL = "countersign:ended"

# Set while a delivery flush job waits in the queue: a burst of decisions queues one flush,
# not one job each. The flush deletes it as it starts, so a decision after that queues another.
DELIVERY_FLUSH_QUEUED = "countersign:delivery:flush-queued"


def delivering(event_id: str) -> str:
    """Set while a worker posts this callback, so two flushes never post it at once."""
    return f"countersign:delivering:{event_id}"


# Held by the worker whose maintenance tick runs now (expiry, lapsed claims, checkpoints).
MAINTENANCE_TICK = "countersign:maintenance:tick"

# Held while the demo agent's ticker job is scheduled (one ticker per installation).
DEMO_TICKER = "countersign:demo:ticker"


# --- people and pages --------------------------------------------------------------------

# The queue's counts per risk level, shared by every reviewer for a few seconds.
QUEUE_LEVEL_COUNTS = "countersign:queue:level-counts"


def login_failures_for_account(username: str) -> str:
    """Failed logins for one account, from every address, in the current window."""
    return f"countersign:login:user:{username.lower()}"


def login_failures_for_account_from_address(username: str, address: str) -> str:
    """Failed logins for one account from one address in the current window."""
    return f"countersign:login:pair:{username.lower()}:{address}"


def login_wait(username: str, address: str) -> str:
    """Set (expiring) while an address that failed on an account under attack must wait."""
    return f"countersign:login:wait:{username.lower()}:{address}"


def login_failures_from_address(address: str) -> str:
    """Failed logins from one client address in the current window."""
    return f"countersign:login:addr:{address}"


def login_throttle_noted(username: str, address: str) -> str:
    """Set once a throttled login was audited, so a flood of them is audited once."""
    return f"countersign:login:noted:{username.lower()}:{address}"


# --- long-polls and bounded audit ----------------------------------------------------------


def long_polls(slug: str) -> str:
    """The agent's long-polls in progress: a sorted set of request id -> expiry (unix
    seconds), trimmed on every use, so the places of a crashed process lapse on their own."""
    return f"countersign:long-polls:{slug}"


def repeat_first(kind: str, minute: int) -> str:
    """Set by the first event of a kind (the SHA-256 of what identifies it) in a minute,
    which is written in full; the rest of that minute's are only counted."""
    return f"countersign:repeats:first:{kind}:{minute}"


def repeat_counts(minute: int) -> str:
    """A hash: each kind (its identity as JSON) -> how many more it had in that minute."""
    return f"countersign:repeats:counts:{minute}"


# A sorted set of the minutes (member and score) whose counts are not in the audit log yet.
REPEAT_MINUTES = "countersign:repeats:minutes"


# --- the worker --------------------------------------------------------------------------

# Sorted set: each worker process ("host:pid") scored by the time of its last heartbeat,
# written every maintenance tick (queue/maintenance.py); /readyz and /metrics read the
# newest. Members silent for a day are dropped as beats are written.
WORKER_HEARTBEATS = "countersign:worker:heartbeats"


# --- Slack (review/notifications/channels/slack*.py) ---------------------------------------


def slack_email(team: str, user: str) -> str:
    """The e-mail Slack's users.info gave for a Slack user ("-": none), for a few minutes."""
    return f"countersign:slack:email:{team}:{user}"


def slack_signature(signature: str) -> str:
    """Set (expiring) once a signed Slack request was accepted: the same one again is a replay."""
    return f"countersign:slack:seen:{signature}"


# --- notifications (review/notifications/) -------------------------------------------------


def notifying(notification_id: str) -> str:
    """Set while a worker sends this notification, so two workers never send it at once."""
    return f"countersign:notifying:{notification_id}"


# Set while a notification send job waits in the queue (one job for a burst of changes).
NOTIFY_SEND_QUEUED = "countersign:notify:send-queued"


# --- live pages (review/reviewing/live.py) ------------------------------------------------

# The number of the latest change the reviewer pages show (a counter, bumped after commit).
LIVE_VERSION = "countersign:live:version"


def live_deferral(deferral_id: str) -> str:
    """The number of the deferral's latest change, for the pages that show it."""
    return f"countersign:live:deferral:{deferral_id}"


# --- undo (review/reviewing/undo.py) --------------------------------------------------------


def take_effect_job_at(second: int) -> str:
    """Set while a take-effect job is scheduled for this second (epoch, UTC): one job takes
    every held decision whose window has closed by then, so the others need none."""
    return f"countersign:undo:job-at:{second}"

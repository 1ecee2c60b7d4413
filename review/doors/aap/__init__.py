"""The AAP-compatible door (PROTOCOL.md section 12): the Agent Approval Protocol, served
under /aap, so an AAP client configured with `base_url = <countersign>/aap` works
unmodified. An AAP request is a deferral like any other (same policy, queue, audit, kill
switch).

- `wire.py`: AAP's shapes: ids, times, the submission and its mapping to a deferral,
  the request resource.
- `requests.py`: create, read (long-poll), cancel, consume, report the outcome.
- `instances.py`: registering an instance, its webhook receiver verified first.
- `tokens.py`: bearer tokens (kept hashed): the agent's own, an instance's credential.
- `notifications.py`: `request.resolved`, through the outbox and the worker.
- `tables.py`: the door's tables (migration 0012). `errors.py`: AAP's refusals and the
  one table from codes to statuses. `views.py`: the blueprint, the only module here that
  knows Flask.
"""

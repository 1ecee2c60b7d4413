"""Canaries: known-bad test deferrals admins seed to measure how reviewers catch them.

kinds.py (what a canary asks for), seeding.py (into the queue, looking like the agent's
own), deciding.py (a reviewer's decision on one: recorded, closed, told at once),
disguise.py (how an open canary's record reads to reviewers), listing.py (the admin
page's list). docs/REVIEWING.md says what reviewers, agents and auditors see of them.
"""

"""Intake: a signed request becomes a validated, scored, diffed deferral."""

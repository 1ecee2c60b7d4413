"""Reviewing: claims under a lease, the queue's reads, decisions, expiry."""

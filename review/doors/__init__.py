"""Doors: other ways in to Countersign than its own API, each turning what comes in into
deferrals through intake (review/intake/receive.py)."""

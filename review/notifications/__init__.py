"""Notifications: deferrals told to people where they are (PROTOCOL.md section 14)."""

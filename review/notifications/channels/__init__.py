"""The channels notifications go out through."""

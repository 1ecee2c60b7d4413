"""Errors the domain raises; views and commands turn them into answers."""


class DomainError(Exception):
    """A request the domain refuses, with a message fit to show the person who made it."""


class Conflict(DomainError):
    pass

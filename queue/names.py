"""Queue names, as constants (the worker listens on all of them, in this order)."""

CALLBACKS = "countersign-callbacks"
DEFAULT = "countersign-default"

ALL = (CALLBACKS, DEFAULT)

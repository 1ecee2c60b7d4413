"""The audit log: the hash chain, signed checkpoints, export, redaction, the offline verifier."""

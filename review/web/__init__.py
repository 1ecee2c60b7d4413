"""The pages people use: reviewers, agents' owners, auditors; login; template filters; health."""

"""`python -m review ...`: the `countersign` command, for when its script is not on PATH."""

from review.cli.main import main

main()

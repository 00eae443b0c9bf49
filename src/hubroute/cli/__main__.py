"""``python -m hubroute.cli``."""

from hubroute.cli import main

main()

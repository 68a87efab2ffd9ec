"""`python -m server ...`: see server/cli.py."""

from server.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m bot` is the same as the `hookbot` console script."""

from bot.cli import main

raise SystemExit(main())

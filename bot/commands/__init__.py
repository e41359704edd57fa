"""The `hookbot` command's commands, one module per group; bot/cli.py parses and dispatches."""

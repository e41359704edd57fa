"""`hookbot package`: the Lambda zip, built by bot/package.py, its progress and summary printed.

The build runs pip in a subprocess and takes a while, so its module is imported only when this command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def package(args: argparse.Namespace, config: str | None) -> int:
    """Build the zip; ``--config`` means what it means everywhere (the config file, already checked by the
    caller), and the Lambda gets that same file."""
    from bot.package import PackageError, build_package

    def progress(step: str) -> None:
        print(f"{step} ...", flush=True)

    try:
        summary = build_package(
            args.output,
            arch=args.arch,
            include_boto3=args.include_boto3,
            project=args.project,
            config=Path(config) if config else None,
            extra_requirements=args.with_requirements,
            python=args.python,
            progress=progress,
        )
    except PackageError as exc:
        print(f"hookbot package: {exc}", file=sys.stderr)
        return 1
    print(summary.describe())
    return 0

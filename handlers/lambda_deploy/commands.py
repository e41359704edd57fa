"""What a ``/deploy`` comment asks for: the grammar, and which rule it is about.

Pure functions, so the comment handler stays short and the grammar is tested without GitHub or AWS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from handlers.lambda_deploy.config import PushRule
from handlers.lambda_deploy.errors import Refused

COMMAND = re.compile(r"^/deploy(?:\s+(?P<args>.*?))?\s*$", re.MULTILINE)
SHA = re.compile(r"^[0-9a-fA-F]{7,40}$")
USAGE = "Usage: `/deploy <sha> [function]` (a commit on the deployed branch) or `/deploy rollback [function]`."


@dataclass(frozen=True, slots=True)
class Command:
    kind: Literal["rollback", "deploy", "usage"]
    ref: str | None = None
    function: str | None = None


def parse_command(body: str) -> Command | None:
    """The first ``/deploy`` line of a comment; None for an ordinary comment."""
    found = COMMAND.search(body)
    if found is None:
        return None
    args = (found.group("args") or "").split()
    if args and args[0] == "rollback" and len(args) <= 2:
        return Command("rollback", function=args[1] if len(args) == 2 else None)
    if args and SHA.match(args[0]) and len(args) <= 2:
        return Command("deploy", ref=args[0].lower(), function=args[1] if len(args) == 2 else None)
    return Command("usage")


def pick_rule(rules: list[PushRule], function: str | None, repository: str) -> PushRule | str:
    """The one rule a command is about, or the reason there is not exactly one.

    A rule whose function name this repository cannot make (a placeholder refused) deploys nothing, so it is
    left out here; the first refusal is the answer when no other rule is left.
    """
    named: dict[PushRule, str] = {}
    refusal = ""
    for rule in rules:
        try:
            named[rule] = rule.function_name(repository)
        except Refused as exc:
            refusal = refusal or f" ({exc})"
    if function is not None:
        named = {rule: name for rule, name in named.items() if name == function}
        if not named:
            return f"`{function}` is not deployed from {repository}."
    functions = sorted(set(named.values()))
    if not functions:
        return f"No Lambda function is deployed from {repository}{refusal}."
    if len(functions) > 1:
        return f"Several functions are deployed from {repository}; name one: " + ", ".join(
            f"`{name}`" for name in functions
        )
    return next(iter(named))

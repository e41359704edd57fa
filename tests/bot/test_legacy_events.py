"""The legacy attribute-less SNS shape: its event is told from the payload correctly, or refused as ambiguous,
for every example payload of @octokit/webhooks-examples (see tests/fixtures/SOURCES.md, octokit/)."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bot.config import load_settings
from bot.github_events import DOCUMENTED_EVENTS, LEGACY_SHAPES, event_from_payload
from tests.helpers import FIXTURES, ROOT

EXAMPLES = FIXTURES / "octokit" / "webhooks-examples-7.6.1.shapes.json.gz"


def examples() -> list[tuple[str, str, str | None, list[str]]]:
    """(package directory, event, action, top-level keys) of each example: all detection looks at."""
    document: dict[str, Any] = json.loads(gzip.decompress(EXAMPLES.read_bytes()))
    return [tuple(row) for row in document["rows"]]


def as_payload(keys: list[str], action: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {key: {} for key in keys}
    if action is not None:
        payload["action"] = action
    return payload


def test_every_example_is_told_right_or_refused() -> None:
    rows = examples()
    assert len(rows) == 726
    wrong = []
    outcome: Counter[str] = Counter()
    for flavour, event, action, keys in rows:
        found = event_from_payload(as_payload(keys, action))
        outcome["ambiguous" if found is None else "right" if found == event else "wrong"] += 1
        if found is not None and found != event:
            wrong.append(f"{flavour} {event}.{action} -> {found}")
    assert wrong == []
    # Refusing everything would pass the line above: most examples must still be told.
    assert outcome["right"] >= 680, outcome


@pytest.mark.parametrize(
    ("event", "action", "keys"),
    [
        ("team", "created", ["action", "team", "organization", "sender", "installation"]),
        ("membership", "added", ["action", "member", "scope", "team", "organization", "sender"]),
        ("deployment", "created", ["action", "deployment", "workflow", "workflow_run", "repository", "sender"]),
        ("issue_comment", "deleted", ["action", "comment", "issue", "repository", "sender"]),
        ("push", None, ["ref", "before", "after", "pusher", "commits", "repository", "sender"]),
    ],
)
def test_the_confusions_of_the_old_detection(event: str, action: str | None, keys: list[str]) -> None:
    assert event_from_payload(as_payload(keys, action)) == event


def test_the_shapes_name_documented_events_only() -> None:
    assert set(LEGACY_SHAPES) <= DOCUMENTED_EVENTS


def test_require_github_signature_defaults_to_true_and_has_an_environment_variable(tmp_path: Path) -> None:
    config = tmp_path / "hookbot.toml"
    config.write_text("")
    assert load_settings({}, config).sns.require_github_signature is True
    off = load_settings({"HOOKBOT_REQUIRE_GITHUB_SIGNATURE": "false"}, config)
    assert off.sns.require_github_signature is False
    template = (ROOT / "deploy" / "template.yaml").read_text()
    assert 'HOOKBOT_REQUIRE_GITHUB_SIGNATURE: "true"' in template

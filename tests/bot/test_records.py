"""bot.records.frozen keeps what the code and plugins use of a dataclass: fields, replace, equality, slots."""

from __future__ import annotations

import dataclasses

import pytest

from bot.config_schema import Setting
from bot.settings import GitHubSettings, Settings, SnsSettings


def test_a_frozen_record_is_a_slotted_dataclass_with_value_equality_and_replace() -> None:
    settings = Settings(sns=SnsSettings(topic_arns=("arn:a",)))
    changed = dataclasses.replace(settings, sns=dataclasses.replace(settings.sns, verify_in_lambda=True))
    assert changed.sns == SnsSettings(topic_arns=("arn:a",), verify_in_lambda=True)
    assert changed.github is settings.github and settings.sns.verify_in_lambda is False
    assert [field.name for field in dataclasses.fields(Setting)][:3] == ["key", "kind", "default"]
    with pytest.raises(AttributeError):
        settings.not_a_field = 1  # type: ignore[attr-defined]  # slots: no stray attributes


def test_secrets_stay_out_of_repr() -> None:
    shown = repr(GitHubSettings(webhook_secret="s3cret-value-0123456789", token="ghp_token"))
    assert "s3cret" not in shown and "ghp_token" not in shown

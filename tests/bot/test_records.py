"""bot.records keeps what the code and plugins use of a dataclass: fields, replace, equality, repr, slots."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bot.config_schema import Setting
from bot.records import record
from bot.settings import GitHubSettings, Settings, SnsSettings


@record
class Sample:
    """A record with every kind of field."""

    name: str
    count: int = 0
    tags: list[str] = dataclasses.field(default_factory=list)
    token: str | None = dataclasses.field(default=None, repr=False)


def test_a_record_is_made_like_a_dataclass() -> None:
    made = Sample("a", 2, token="t")
    assert (made.name, made.count, made.tags, made.token) == ("a", 2, [], "t")
    assert Sample("a").tags is not Sample("a").tags  # a default factory runs per instance
    assert Sample(name="b", tags=["x"]) == Sample("b", 0, ["x"])
    other: object = ("a", 0, [], None)
    assert Sample("a") != Sample("b") and Sample("a") != other
    assert dataclasses.is_dataclass(Sample)  # last: mypy narrows Sample to a bare dataclass type after it


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "missing argument 'name'"),
        (("a",), {"name": "b"}, "multiple values for argument 'name'"),
        (("a",), {"colour": "red"}, "unexpected argument 'colour'"),
        (("a", 1, [], None, "extra"), {}, "takes 4 arguments, 5 given"),
    ],
)
def test_wrong_arguments_are_refused_as_by_a_dataclass(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        Sample(*args, **kwargs)


def test_repr_leaves_out_the_fields_marked_so() -> None:
    assert repr(Sample("a", token="s3cret")) == "Sample(name='a', count=0, tags=[])"
    shown = repr(GitHubSettings(webhook_secret="s3cret-value-0123456789", token="ghp_token"))
    assert "s3cret" not in shown and "ghp_token" not in shown and "api_url='https://api.github.com'" in shown


def test_replace_and_fields_work_on_records_and_slots_refuse_stray_attributes() -> None:
    settings = Settings(sns=SnsSettings(topic_arns=("arn:a",)))
    changed = dataclasses.replace(settings, sns=dataclasses.replace(settings.sns, verify_in_lambda=True))
    assert changed.sns == SnsSettings(topic_arns=("arn:a",), verify_in_lambda=True)
    assert changed.github is settings.github and settings.sns.verify_in_lambda is False
    assert [field.name for field in dataclasses.fields(Setting)][:3] == ["key", "kind", "default"]
    with pytest.raises(AttributeError):
        settings.not_a_field = 1  # type: ignore[attr-defined]

"""Log lines are JSON objects carrying the delivery id, and never a secret."""

from __future__ import annotations

import json
import logging

from bot.logs import JsonFormatter, current_delivery


def render(message: str, **fields: object) -> dict[str, object]:
    record = logging.LogRecord("hookbot.test", logging.INFO, __file__, 1, message, (), None)
    record.fields = fields
    return dict(json.loads(JsonFormatter().format(record)))


def test_a_line_is_one_json_object_with_the_delivery_id() -> None:
    token = current_delivery.set("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    try:
        line = render("handler finished", handler="greeter", outcome="ok", ms=1.5)
    finally:
        current_delivery.reset(token)
    assert line["delivery"] == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert (line["message"], line["handler"], line["outcome"], line["ms"]) == ("handler finished", "greeter", "ok", 1.5)
    assert line["level"] == "info" and str(line["time"]).endswith("Z")


def test_secret_fields_are_redacted() -> None:
    line = render("x", token="ghp_abc", secret="s3cret", Authorization="Bearer x")
    assert line["token"] == line["secret"] == line["Authorization"] == "[redacted]"

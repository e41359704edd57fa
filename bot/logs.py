"""JSON log lines, one object per line, with the delivery id carried by a context variable.

Structured lines are what CloudWatch Logs Insights and `jq` read; the context variable means a handler's own
log calls are tagged with the delivery they serve without passing ids around.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import Any

import orjson

current_delivery: contextvars.ContextVar[str | None] = contextvars.ContextVar("delivery_id", default=None)

REDACTED = "[redacted]"
_SECRET_FIELDS = frozenset({"token", "secret", "private_key", "authorization", "password"})


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON object; extra fields come from ``extra={"fields": {...}}``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        delivery_id = current_delivery.get()
        if delivery_id:
            line["delivery"] = delivery_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                line[key] = REDACTED if key.lower() in _SECRET_FIELDS else value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def setup_logging(level: int = logging.INFO) -> None:
    """Send every hookbot log line to stderr as JSON (stdout stays free for command output)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

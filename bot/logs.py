"""Log lines for machines (JSON, one object per line) or for people (short aligned console lines), with the
delivery id carried by a context variable.

Structured lines are what CloudWatch Logs Insights and `jq` read; console lines are what a person running
`hookbot serve` in a terminal reads. The context variable means a handler's own log calls are tagged with the
delivery they serve without passing ids around.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TextIO

import orjson

from bot.metrics import REFUSALS_SUPPRESSED

current_delivery: contextvars.ContextVar[str | None] = contextvars.ContextVar("delivery_id", default=None)

REDACTED = "[redacted]"
_SECRET_FIELDS = frozenset({"token", "secret", "private_key", "authorization", "password"})
# Credentials GitHub and AWS issue, by their shape. GitHub's tokens (ghp_, gho_, ghu_, ghs_, ghr_) were 36 base62
# characters after the prefix; since 2026 an installation token (ghs_) is a JWT of about 520 characters, three
# base64url parts joined by dots, so the dotted parts belong to the token too. github_pat_ is a fine-grained token;
# AKIA/ASIA an AWS access key id; a PEM private key block is taken whole (to the end of the text if cut short).
CREDENTIAL_PATTERN = re.compile(
    r"gh[pousr]_[A-Za-z0-9_-]{16,}(?:\.[A-Za-z0-9_-]+)*|github_pat_[A-Za-z0-9_]{16,}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|-----BEGIN[A-Z ]* PRIVATE KEY-----(?:.*?-----END[A-Z ]* PRIVATE KEY-----|.*)",
    re.DOTALL,
)
# What log lines redact besides: JWTs (App auth) and "token x"/"Bearer x" headers.
_SECRET_PATTERN = re.compile(
    CREDENTIAL_PATTERN.pattern + r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"
    r"|(?i:\b(?:token|bearer)\s+)[A-Za-z0-9_.=-]{16,}",
    re.DOTALL,
)
# Every text the pattern above matches holds one of these, or "token" or "bearer" in some case: a scan for them,
# whose branches each start with a letter the regex engine can skip to, spares most lines the full pattern, whose
# case-insensitive branch makes the engine try every alternative at every character (3.0 -> 0.6 us for a
# 110-character line). str.lower() maps every character the case-insensitive words match to their letters. A new
# branch of the pattern needs its start here too (tests/bot/test_logs.py pins the two together).
_SECRET_HINT = re.compile(r"gh[pousr]_|github_pat_|AKIA|ASIA|-----BEGIN|eyJ")
_known_secrets: set[str] = set()


# Short values already redacted (event names, repositories, outcomes: a delivery's lines repeat them), so the
# pattern is not run over them again and again; emptied when full and whenever a secret is registered.
_redacted: dict[str, str] = {}
REDACTED_CACHE_SIZE = 4096
REDACTED_CACHE_MAX_LENGTH = 100


def register_secret(value: str | bytes | None) -> None:
    """Remember a configured secret (webhook secret, token) so that no log line ever prints it verbatim."""
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    if text and len(text) >= 8:
        _known_secrets.add(text)
        _redacted.clear()


def may_hold_secret(text: str) -> bool:
    """False only when the log lines' secret pattern cannot match ``text`` (a cheap scan before the full one)."""
    if _SECRET_HINT.search(text) is not None:
        return True
    lowered = text.lower()
    return "token" in lowered or "bearer" in lowered


def redact(text: str) -> str:
    cached = _redacted.get(text)
    if cached is not None:
        return cached
    clean = text
    for secret in _known_secrets:
        if secret in clean:
            clean = clean.replace(secret, REDACTED)
    if may_hold_secret(clean):
        clean = _SECRET_PATTERN.sub(REDACTED, clean)
    if len(text) <= REDACTED_CACHE_MAX_LENGTH:
        if len(_redacted) >= REDACTED_CACHE_SIZE:
            _redacted.clear()
        _redacted[text] = clean
    return clean


# A line's time ends with its millisecond, the same 1,000 texts over and over.
_MILLISECONDS = [f".{millisecond:03d}Z" for millisecond in range(1000)]
# Whether a field's name is a secret's (any case), by name: lines repeat the same few names.
_secret_field: dict[str, bool] = {}


def _remember_field(key: str) -> bool:
    if len(_secret_field) >= REDACTED_CACHE_SIZE:
        _secret_field.clear()
    secret = _secret_field[key] = key.lower() in _SECRET_FIELDS
    return secret


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON object; extra fields come from ``extra={"fields": {...}}``.

    A delivery writes a few lines, so this is on the receive path: the time text is made once per second.
    """

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second, self._second_text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        millisecond = int(record.msecs)
        fraction = _MILLISECONDS[millisecond] if 0 <= millisecond < 1000 else f".{millisecond:03d}Z"
        line: dict[str, Any] = {
            "time": self._second_text + fraction,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        delivery_id = current_delivery.get()
        if delivery_id:
            line["delivery"] = delivery_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                secret = _secret_field.get(key)
                if secret is None:
                    secret = _remember_field(key)
                if secret:
                    line[key] = REDACTED
                elif isinstance(value, str) and value != delivery_id:
                    line[key] = redact(value)
                else:  # not text, or the delivery id the line already shows as it is (a new one on every line)
                    line[key] = value
        if record.exc_info:
            line["error"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(line, default=str).decode()


def _console_value(value: Any) -> str:
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        value = ",".join(value)
    text = redact(value) if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    if not text or any(char in text for char in ' ="\n'):
        return orjson.dumps(text).decode()
    return text


class ConsoleFormatter(logging.Formatter):
    """One short line for people: time, level, short delivery id, message, then ``key=value`` fields.

    The columns line up so that a glance down the left edge finds the warnings and one delivery's lines; a
    traceback follows only when the log call carried one (hookbot passes it only for unexpected errors).
    """

    MESSAGE_WIDTH = 34

    def format(self, record: logging.LogRecord) -> str:
        from bot.delivery import short_id

        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        delivery_id = current_delivery.get()
        fields = getattr(record, "fields", None)
        pairs: list[str] = []
        message = redact(record.getMessage())
        if isinstance(fields, dict):
            delivery_id = delivery_id or fields.get("delivery")
            for key, value in fields.items():
                if key == "delivery" or value is None:
                    continue
                shown = REDACTED if key.lower() in _SECRET_FIELDS else _console_value(value)
                if shown.strip('"') not in message:  # a person reads it once; JSON keeps it as a field
                    pairs.append(f"{key}={shown}")
        if pairs:
            message = f"{message:<{self.MESSAGE_WIDTH}} {' '.join(pairs)}"
        ident = short_id(str(delivery_id)) if delivery_id else "-"
        line = f"{clock} {record.levelname:<7} {ident:<15} {message}"
        if record.exc_info:
            line = f"{line}\n{redact(self.formatException(record.exc_info))}"
        return line


class _NoCallerLogger(logging.Logger):
    """A logger that does not look up its caller's file and line, which no hookbot log line shows.

    The lookup walks the stack on every record (the logging HOWTO's "Optimization" section lists it among the
    costs worth avoiding); overriding the documented ``findCaller`` saves those microseconds per line without
    touching the logging module's internals.
    """

    def findCaller(self, stack_info: bool = False, stacklevel: int = 1) -> tuple[str, int, str, str | None]:
        return "(unknown file)", 0, "(unknown function)", None


logging.setLoggerClass(_NoCallerLogger)

LOG_FORMATS = ("console", "json")


def setup_logging(log_format: str | None = None, level: str | int = logging.INFO, stream: TextIO | None = None) -> str:
    """Send every hookbot log line to stderr (stdout stays free for command output); returns the format used.

    ``console`` is for people at a terminal, ``json`` (one object per line) for CloudWatch Logs Insights and
    ``jq``; without a choice, a terminal gets console and anything else (a container's log, a file) JSON.
    """
    from bot.config_schema import ConfigError

    stream = stream or sys.stderr
    if log_format is None:
        log_format = "console" if stream.isatty() else "json"
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"log format must be `console` or `json`, not {log_format!r}")
    if isinstance(level, str):
        number = logging.getLevelName(level.upper())
        if not isinstance(number, int):
            raise ConfigError(f"log level must be debug, info, warning or error, not {level!r}")
        level = number
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ConsoleFormatter() if log_format == "console" else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # The lines never show the thread or process, so each record need not look them up (public switches of
    # the logging module, from the HOWTO's "Optimization" advice).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    return log_format


class RefusalLog:
    """Refusal log lines under a flood: the first ``burst`` of each window one by one, then a count.

    A forged-delivery flood must not turn into a log flood: past the burst, refusals are only counted (by status,
    and by source up to ``max_sources`` distinct ones, so memory stays flat whatever the sources), and one
    summary line per window reports them. ``timer=False`` is for a caller whose event loop does not outlive a
    call (Lambda): it calls :meth:`flush_if_due` instead, and the next refusal after a window also flushes.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 10,
        window: float = 60.0,
        max_sources: int = 10,
        clock: Callable[[], float] = time.monotonic,
        timer: bool = True,
    ) -> None:
        self._log = logger
        self._burst = burst
        self._window = window
        self._max_sources = max_sources
        self._clock = clock
        self._window_start = clock()
        self._seen = 0
        self._statuses: Counter[int] = Counter()
        self._sources: Counter[str] = Counter()
        self._other_sources = 0
        self._use_timer = timer
        self._timer: asyncio.TimerHandle | None = None

    def refused(self, status: int, reason: str, source: str | None, fields: dict[str, Any]) -> None:
        now = self._clock()
        if now - self._window_start >= self._window:
            self.flush()
            self._window_start, self._seen = now, 0
        self._seen += 1
        if self._seen <= self._burst:
            self._log.warning("refused delivery: %s", reason, extra={"fields": fields})
            return
        REFUSALS_SUPPRESSED.inc()
        self._statuses[status] += 1
        source = source or "-"
        if source in self._sources or len(self._sources) < self._max_sources:
            self._sources[source] += 1
        else:
            self._other_sources += 1
        if self._timer is None and self._use_timer:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._timer = loop.call_later(max(0.0, self._window_start + self._window - now), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.flush()
        self._window_start, self._seen = self._clock(), 0

    def flush_if_due(self) -> None:
        """Write the summary when its window is over (for callers without a timer)."""
        now = self._clock()
        if now - self._window_start >= self._window:
            self.flush()
            self._window_start, self._seen = now, 0

    def flush(self) -> None:
        """Write the summary of the refusals not logged one by one (none: nothing to write)."""
        total = sum(self._statuses.values())
        if total:
            sources = dict(self._sources.most_common())
            if self._other_sources:
                sources["(other)"] = self._other_sources
            self._log.warning(
                "refused %d more deliveries without logging each (flood)",
                total,
                extra={
                    "fields": {
                        "suppressed": total,
                        "statuses": {str(k): v for k, v in self._statuses.items()},
                        "sources": sources,
                    }
                },
            )
        self._statuses.clear()
        self._sources.clear()
        self._other_sources = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

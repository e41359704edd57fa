"""The audit plugin's records: the config, the redaction, and writing and reading a record in each store.

Imported by the plugin (handlers/audit/__init__.py) once its config names a destination, and by `hookbot audit
show`.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from bot.aws import AwsClients
from bot.plugin import CREDENTIAL_PATTERN, WILDCARD, Context, Event, GitHubAPI, check_event_names

REDACTED = "[redacted]"
DEFAULT_TTL_DAYS = 90
DYNAMODB_KEY = "delivery_id"
DYNAMODB_PAYLOAD_LIMIT = 350_000  # bytes; a DynamoDB item is at most 400 KB, GitHub payloads up to 25 MB

Kind = Literal["dynamodb", "s3", "file"]
# An e-mail address anywhere in a string (a commit message, a body), but not the `git@host:` of an SSH clone URL.
EMAIL = r"(?<![\w.%+-])(?!git@)[\w.%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"


@dataclass(frozen=True, slots=True)
class Destination:
    kind: Kind
    name: str  # the table, the bucket, or the directory
    prefix: str = ""  # S3 only: where in the bucket the objects go

    def __str__(self) -> str:
        return f"{self.kind}://{self.name}/{self.prefix}" if self.kind == "s3" else f"{self.kind}://{self.name}"


Pattern = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AuditConfig:
    destination: Destination | None = None  # None: nothing is recorded (the plugin is installed, not set up)
    redact: tuple[Pattern, ...] = ()
    events: tuple[str, ...] = (WILDCARD,)
    ttl_days: int = DEFAULT_TTL_DAYS
    redact_values: bool = True  # e-mail addresses in any string value too (credentials are always scanned)


def parse_destination(text: str) -> Destination:
    scheme, sep, rest = text.partition("://")
    if sep and scheme == "dynamodb" and rest.strip("/") and "/" not in rest.strip("/"):
        return Destination("dynamodb", rest.strip("/"))
    if sep and scheme == "s3" and rest.split("/", 1)[0]:
        bucket, _, prefix = rest.partition("/")
        return Destination("s3", bucket, prefix)
    if sep and scheme == "file" and rest:
        return Destination("file", rest)
    raise ValueError(f"destination {text!r} is not one of dynamodb://TABLE, s3://BUCKET/PREFIX/ or file://DIRECTORY/")


def parse_pattern(text: str) -> Pattern:
    """``**.email`` -> ("**", "email"): ``**`` is any number of keys, ``*`` and ``?`` match within one key.

    Keys match whatever their case (``email`` hides ``Email`` and ``EMAIL``), so kept in lower case."""
    parts = tuple(text.lower().split("."))
    if not text or any(not part for part in parts):
        raise ValueError(f"redact path {text!r} has an empty part; write keys joined by dots, e.g. sender.*_url")
    return parts


# Text every credential the scanner looks for contains: most strings (URLs, names, ids) hold none, so the full
# expression runs only over the few that might match (one search for these literals is far cheaper).
CREDENTIAL_MARKERS = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "AKIA", "ASIA", "PRIVATE KEY")


@dataclass(frozen=True, slots=True)
class ValueScanner:
    """Replaces, inside one string, what no audit record should keep: the credentials GitHub and AWS issue
    (bot.plugin.CREDENTIAL_PATTERN, the same shapes log lines hide) and, with ``emails``, e-mail addresses."""

    pattern: re.Pattern[str]
    markers: re.Pattern[str]  # a cheap first look: the literals every match contains

    def __call__(self, text: str) -> str:
        if self.markers.search(text) is None:
            return text
        return self.pattern.sub(REDACTED, text)


@functools.lru_cache(maxsize=2)
def value_scanner(emails: bool) -> ValueScanner:
    pattern = re.compile(CREDENTIAL_PATTERN.pattern + (f"|{EMAIL}" if emails else ""), re.DOTALL)
    markers = CREDENTIAL_MARKERS + (("@",) if emails else ())
    return ValueScanner(pattern, re.compile("|".join(re.escape(marker) for marker in markers)))


def configure(section: Mapping[str, Any]) -> AuditConfig | None:
    known = {"destination", "redact", "redact_values", "events", "ttl_days"}
    if unknown := sorted(set(section) - known):
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; [audit] takes {', '.join(sorted(known))}")
    destination = section.get("destination")
    if destination is not None and not isinstance(destination, str):
        raise ValueError(f"destination must be a string such as dynamodb://hookbot-audit, not {destination!r}")
    events = _strings(section.get("events", [WILDCARD]), "events")
    check_event_names(events, "events")
    ttl_days = section.get("ttl_days", DEFAULT_TTL_DAYS)
    if isinstance(ttl_days, bool) or not isinstance(ttl_days, int) or ttl_days <= 0:
        raise ValueError(f"ttl_days must be a positive whole number, not {ttl_days!r}")
    redact_values = section.get("redact_values", True)
    if not isinstance(redact_values, bool):
        raise ValueError(f"redact_values must be true or false, not {redact_values!r}")
    config = AuditConfig(
        destination=parse_destination(destination) if destination else None,
        redact=tuple(parse_pattern(text) for text in _strings(section.get("redact", []), "redact")),
        events=events,
        ttl_days=ttl_days,
        redact_values=redact_values,
    )
    # Checked in full first, so a typo is reported even before a destination is set.
    return config if config.destination is not None else None


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{what} must be a list of strings, not {value!r}")
    return tuple(value)


State = tuple[Pattern, int]  # a pattern and how many of its parts the keys so far have matched


def redact(value: Any, patterns: Iterable[Pattern], scanner: ValueScanner | None = None) -> Any:
    """A copy of ``value`` with every key path matching a pattern replaced by ``[redacted]``, and every match of
    ``scanner`` inside a string value (a token or an address in a commit message) replaced by ``[redacted]``.

    The patterns are walked together as a small automaton over the key path, so the cost is one pass over the
    payload whatever their number; without a scanner, subtrees no pattern can reach are shared, not copied. List
    items are keyed by their index (``commits.*.author.email``).
    """
    return _walk(value, frozenset((pattern, 0) for pattern in patterns), scanner)


def _walk(value: Any, states: frozenset[State], scanner: ValueScanner | None) -> Any:
    if isinstance(value, str):
        return scanner(value) if scanner is not None else value
    if not states and scanner is None:
        return value
    if isinstance(value, Mapping):
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return value
    out = {}
    for key, child in items:
        following, hit = _step(states, str(key).lower()) if states else (states, False)
        out[key] = REDACTED if hit else _walk(child, following, scanner)
    return out if isinstance(value, Mapping) else list(out.values())


@functools.lru_cache(maxsize=4096)
def _step(states: frozenset[State], key: str) -> tuple[frozenset[State], bool]:
    """The states after one more key, and whether some pattern matched the whole path up to and with it.

    Cached: payloads repeat the same keys at the same kinds of places, so most steps are a dictionary lookup."""
    following: set[State] = set()
    hit = False
    for pattern, index in _closure(states):
        part = pattern[index]
        last = index + 1 == len(pattern)
        if part == "**":
            following.add((pattern, index))  # `**` takes this key and may take more
            hit = hit or last
        elif fnmatch.fnmatchcase(key, part):
            if last:
                hit = True
            else:
                following.add((pattern, index + 1))
    return frozenset(following), hit


def _closure(states: frozenset[State]) -> set[State]:
    """Add the states where a ``**`` matches no key at all."""
    result = set(states)
    pending = list(states)
    while pending:
        pattern, index = pending.pop()
        if pattern[index] == "**" and index + 1 < len(pattern) and (pattern, index + 1) not in result:
            result.add((pattern, index + 1))
            pending.append((pattern, index + 1))
    return result


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def build_record(delivery: Event, config: AuditConfig) -> dict[str, Any]:
    return {
        "delivery_id": delivery.delivery_id,
        "event": delivery.event,
        "action": delivery.action,
        "repository": delivery.repository,
        "received_at": _iso(delivery.received_at),
        "source": delivery.source,
        "expires_at": int(delivery.received_at + config.ttl_days * 86400),
        "payload": redact(delivery.data, config.redact, value_scanner(config.redact_values)),
    }


_file_lock = threading.Lock()  # one writer at a time per process, so JSON lines never interleave


def _day_file(directory: Path, received_at: str) -> Path:
    return directory / f"audit-{received_at[:10]}.jsonl"


def write_record(destination: Destination, aws: AwsClients, record: Mapping[str, Any]) -> None:
    """Store one record (blocking: run it in a thread). A retry of the same delivery overwrites, never doubles,
    in DynamoDB and S3; a JSON-lines file may then hold the line twice, and ``show`` prints the latest."""
    if destination.kind == "dynamodb":
        aws.client("dynamodb").put_item(TableName=destination.name, Item=_dynamodb_item(record))
    elif destination.kind == "s3":
        aws.client("s3").put_object(
            Bucket=destination.name,
            Key=f"{destination.prefix}{record['delivery_id']}.json",
            Body=orjson.dumps(record),
            ContentType="application/json",
        )
    else:
        directory = Path(destination.name)
        with _file_lock:
            directory.mkdir(parents=True, exist_ok=True)
            with _day_file(directory, record["received_at"]).open("ab") as fh:
                fh.write(orjson.dumps(record) + b"\n")


def _dynamodb_item(record: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB attributes; the payload is stored as JSON text (numbers and nesting survive a round trip)."""
    item: dict[str, Any] = {"expires_at": {"N": str(record["expires_at"])}}
    for key in ("delivery_id", "event", "action", "repository", "received_at", "source"):
        if record[key] is not None:
            item[key] = {"S": record[key]}
    payload = orjson.dumps(record["payload"])
    if len(payload) <= DYNAMODB_PAYLOAD_LIMIT:
        item["payload"] = {"S": payload.decode()}
    else:
        item["payload_omitted"] = {"S": f"{len(payload)} bytes: over DynamoDB's 400 KB item limit"}
    return item


def read_record(destination: Destination, aws: AwsClients, delivery_id: str) -> dict[str, Any] | None:
    """The stored record of one delivery, or None (blocking: for `hookbot audit show`)."""
    if destination.kind == "dynamodb":
        response = aws.client("dynamodb").get_item(
            TableName=destination.name, Key={DYNAMODB_KEY: {"S": delivery_id}}, ConsistentRead=True
        )
        item = response.get("Item")
        if item is None:
            return None
        record: dict[str, Any] = {"action": None, "repository": None}
        record.update((key, next(iter(value.values()))) for key, value in item.items())
        record["expires_at"] = int(record["expires_at"])
        if "payload" in record:
            record["payload"] = orjson.loads(record["payload"])
        return record
    if destination.kind == "s3":
        client = aws.client("s3")
        try:
            body = client.get_object(Bucket=destination.name, Key=f"{destination.prefix}{delivery_id}.json")["Body"]
        except client.exceptions.NoSuchKey:
            return None
        found: dict[str, Any] = orjson.loads(body.read())
        return found
    latest = None
    for path in sorted(Path(destination.name).glob("audit-*.jsonl")):
        with path.open("rb") as fh:
            for line in fh:
                if delivery_id.encode() in line:
                    candidate = orjson.loads(line)
                    if candidate.get("delivery_id") == delivery_id:
                        latest = candidate
    return latest


async def record_delivery(event: Event, gh: GitHubAPI, ctx: Context[AuditConfig]) -> None:
    config = ctx.config
    if config.destination is None or not event.matches(config.events):
        return
    record = build_record(event, config)
    await asyncio.to_thread(write_record, config.destination, ctx.aws, record)
    ctx.log.info("delivery recorded", extra={"fields": {"delivery": event.delivery_id, "to": str(config.destination)}})

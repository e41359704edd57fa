"""`hookbot replay` and `hookbot send`: trying a payload without GitHub, in-process or against a running server.

replay runs the plugins on a payload file here (dry-run unless ``--live``); send signs the file with the webhook
secret and posts it with GitHub's headers, so the whole receive path is exercised as a real delivery would be.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from bot import __version__
from bot.config_schema import ConfigError
from bot.delivery import Delivery
from bot.github_webhook import parse_payload
from bot.runtime import SECRET_FILE, Runtime
from bot.settings import Settings


async def replay(
    settings: Settings,
    body: bytes,
    event: str,
    action: str | None,
    live: bool,
    plugin_paths: Sequence[Path] = (),
) -> int:
    payload = parse_payload(body, "application/json")
    if action:
        payload["action"] = action
    delivery = Delivery(event=event, delivery_id=f"replay-{uuid.uuid4()}", payload=payload, body=body, source="replay")
    # --live asks for live mode whatever the environment says; without the credentials a loaded plugin needs,
    # Runtime.build refuses rather than quietly staying in dry-run.
    runtime = Runtime.build(settings, dry_run=not live, secrets_=[], plugin_paths=plugin_paths)
    try:
        result = await runtime.dispatcher.dispatch(delivery)
    finally:
        await runtime.close()
    for line in result.actions:
        print(line)
    if not result.actions:
        print(f"no actions for {delivery.describe()}")
    for outcome in result.outcomes:
        if outcome.status == "failed":
            print(f"handler {outcome.handler} failed: {outcome.error}", file=sys.stderr)
    return 0 if result.ok else 1


def send(settings: Settings, args: argparse.Namespace) -> int:
    """Post a payload file to a running hookbot exactly as GitHub would: signed, with GitHub's headers."""
    import hashlib
    import hmac
    import urllib.error
    import urllib.parse
    import urllib.request

    secret = settings.github.webhook_secret or read_generated_secret(settings.state_dir)
    if not secret:
        raise ConfigError(
            "no webhook secret to sign with: set GITHUB_WEBHOOK_SECRET, or start `hookbot serve` once with this "
            f"state dir so it generates one in {settings.state_dir / SECRET_FILE}"
        )
    payload = args.file.read_bytes()
    if args.form:
        body = urllib.parse.urlencode({"payload": payload.decode()}).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        body, content_type = payload, "application/json"
    delivery_id = args.delivery or str(uuid.uuid4())
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(  # noqa: S310 - the URL is the user's own --url
        args.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": content_type,
            "User-Agent": f"GitHub-Hookshot/hookbot-send-{__version__}",
            "X-GitHub-Event": args.event,
            "X-GitHub-Delivery": delivery_id,
            "X-Hub-Signature-256": f"sha256={signature}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            status, reason, text = answer.status, answer.reason, answer.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        status, reason, text = exc.code, exc.reason, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"hookbot: cannot reach {args.url}: {reason} (is `hookbot serve` running?)", file=sys.stderr)
        return 1
    print(f"delivery {delivery_id}: {status} {reason}")
    print(text.rstrip())
    return 0 if 200 <= status < 300 else 1


def read_generated_secret(state_dir: Path) -> str | None:
    path = state_dir / SECRET_FILE
    return path.read_text().strip() if path.is_file() else None

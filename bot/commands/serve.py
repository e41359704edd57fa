"""`hookbot serve`: the checks and tuning a long-running server needs before it binds, then the serve loop.

Apart from the other commands because it alone runs for days: it makes the state dir private, picks the event
loop, freezes start-up objects out of the garbage collector's way and says in its first lines how it is set up.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from bot import __version__
from bot.config_schema import ConfigError
from bot.runtime import SECRET_FILE, Runtime, ensure_webhook_secret, webhook_secrets
from bot.settings import Settings

log = logging.getLogger("hookbot")


PRIVATE_UMASK = 0o077


def keep_files_private() -> None:
    """Everything hookbot writes from here on is for its own user only: state dir 0700, files 0600.

    The state dir holds the webhook secret and the journal, whose rows are raw delivery bodies (private
    repositories' issues and code); the umask covers files made later too, by SQLite (the WAL) and by plugins.
    """
    os.umask(PRIVATE_UMASK)


def check_state_dir(state_dir: Path) -> None:
    """Fail at start, with one clear line, when the journal cannot be kept (rather than on the first delivery).

    A state dir (and its files) made by an older hookbot, or by hand, with access for others is made private.
    """
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        make_private(state_dir, 0o700)
        for path in state_dir.iterdir():
            if path.is_file() and not path.is_symlink():
                make_private(path, 0o600)
        probe = state_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"state dir {state_dir} is not writable ({exc.strerror}); set HOOKBOT_STATE_DIR to a writable directory"
        ) from None


def make_private(path: Path, mode: int) -> None:
    current = stat.S_IMODE(path.stat().st_mode)
    if current & PRIVATE_UMASK:
        path.chmod(mode)
        log.info("made %s private (mode %o, was %o)", path, mode, current)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (``pip install '.[fast]'`` from a checkout), else asyncio's own loop.

    uvloop's C transports cut the server's per-request cost on the hot path (reading the body, writing the
    answer) by about a quarter; it stays optional because it is not built for every platform.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


GC_THRESHOLDS = (50_000, 20, 20)


def tune_garbage_collector() -> None:
    """Keep the cyclic garbage collector off the receive path of a long-running server.

    Measured under load (BENCHMARKS.md): with the defaults a full collection ran about once a second and walked
    every object made at start (modules, aiohttp, the plugins), pausing the loop 18-21 ms each time, which is
    what the slowest answers waited for; and each parsed payload's few hundred objects set off a young
    collection every ~30 deliveries (~190 us each, 3% of the CPU). Freezing what exists at start takes it out of
    every later collection, and a higher first threshold lets payloads die before anything walks them; cycles
    are still collected, just in larger batches.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def secret_source(settings: Settings, generated: bool | None) -> str:
    """Where the webhook secret came from, for the start-up summary (never the secret itself)."""
    if generated is not None:
        where = settings.state_dir / SECRET_FILE
        return f"generated now, kept in {where}" if generated else f"generated earlier, kept in {where}"
    for item in settings.resolved:
        if item.section == "github" and item.setting.key == "webhook_secret":
            if item.source == "file":
                return f"config file {item.origin}"
            for suffix in ("_SSM_PARAMETER", "_SECRETS_MANAGER_ID"):
                if f"{item.origin}{suffix}" in os.environ:
                    return f"{item.origin}{suffix}"
            return f"environment ({item.origin})"
    return "none"


def log_startup(runtime: Runtime, secret_from: str) -> None:
    """One line each for what a first start needs to know, in both log formats."""
    settings = runtime.settings
    config = str(settings.config_file) if settings.config_file else "none"
    log.info("hookbot %s", __version__, extra={"fields": {"version": __version__}})
    log.info("config file: %s", config, extra={"fields": {"config_file": config}})
    log.info("state dir: %s", settings.state_dir, extra={"fields": {"state_dir": str(settings.state_dir)}})
    log.info("GitHub auth: %s", settings.github.auth_mode, extra={"fields": {"auth": settings.github.auth_mode}})
    log.info("webhook secret: %s", secret_from, extra={"fields": {"secret_from": secret_from}})
    if runtime.dispatcher.dry_run:
        why = "HOOKBOT_DRY_RUN" if settings.dry_run else "no GitHub credentials: set GITHUB_TOKEN or a GitHub App"
        log.info("mode: dry-run, actions are logged, not performed (%s)", why, extra={"fields": {"mode": "dry-run"}})
    else:
        log.info("mode: live", extra={"fields": {"mode": "live"}})
    names = [plugin.name for plugin in runtime.plugins.loaded]
    log.info("plugins loaded: %s", ", ".join(names) or "none", extra={"fields": {"plugins": names}})
    for name, reason in runtime.plugins.not_loaded.items():
        log.info("plugin %s not loaded: %s", name, reason, extra={"fields": {"plugin": name, "reason": reason}})


def serve(settings: Settings, host: str | None, port: int | None, plugin_paths: Sequence[Path] = ()) -> int:
    from bot.serve_loop import AcceptErrorLog, connection_cap, raise_open_files_limit, run_until_signalled, serve_app
    from bot.server import create_app, create_metrics_app

    keep_files_private()
    open_files = raise_open_files_limit()

    secrets = webhook_secrets(settings)
    generated: bool | None = None
    if not secrets:
        value, generated = ensure_webhook_secret(settings.state_dir)
        if generated:
            print(
                "hookbot generated a webhook secret (kept in "
                f"{settings.state_dir / SECRET_FILE}):\n\n    {value}\n\n"
                "Paste it into GitHub: repository Settings > Webhooks > Add webhook > Secret,\n"
                "with Content type application/json and Payload URL http(s)://<this host>/webhook.\n",
                flush=True,
            )
        secrets = [value.encode()]
    check_state_dir(settings.state_dir)
    runtime = Runtime.build(settings, secrets_=secrets, plugin_paths=plugin_paths)
    runtime.check_dedupe_table()
    log_startup(runtime, secret_source(settings, generated))
    host = host or settings.server.host
    port = port or settings.server.port
    server = settings.server
    app = create_app(runtime)
    metrics_app = create_metrics_app(app) if server.metrics_port is not None else None
    tune_garbage_collector()

    def listening() -> None:  # once every socket is bound: a port clash never says "listening" first
        fields = {"host": host, "port": port}
        if server.metrics_port is None:
            routes = "POST /webhook, GET /healthz, GET /metrics"
            log.info("listening on http://%s:%d (%s)", host, port, routes, extra={"fields": fields})
        else:
            log.info("listening on http://%s:%d (POST /webhook, GET /healthz)", host, port, extra={"fields": fields})
            log.info("metrics on http://%s:%d/metrics", host, server.metrics_port)

    loop = new_event_loop()
    loop.set_exception_handler(AcceptErrorLog())
    try:
        run_until_signalled(
            loop,
            serve_app(
                app,
                host,
                port,
                max_connections=connection_cap(server.max_connections, open_files),
                idle_timeout=server.idle_timeout_seconds,
                metrics_app=metrics_app,
                metrics_port=server.metrics_port,
                on_listening=listening,
            ),
        )
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise ConfigError(
                f"cannot listen on {host}:{port}: {os.strerror(exc.errno)} (choose another: --port or [server] port)"
            ) from None
        raise
    return 0

"""The exec plugin's hooks: their config, rendering a command from a payload, running it, reporting its output.

Imported by the plugin (handlers/exec/__init__.py) once its config has hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import os
import re
import shlex
import signal
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from bot.config_schema import did_you_mean
from bot.plugin import (
    REDACTED,
    Context,
    Event,
    GitHubAPI,
    HandlerError,
    SettingError,
    before_effect,
    check_event_names,
    comment_once,
    hidden_marker,
    is_about_issue,
    issue_path,
    register_secret,
)

DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_CONCURRENT = 4
DEFAULT_OUTPUT_LIMIT = 64 * 1024  # bytes kept of each of stdout and stderr; the rest is read and dropped
COMMENT_LIMIT = 60_000  # GitHub refuses comment bodies over 65536 characters; leave room for the marker
HOOK_NAME = re.compile(r"[A-Za-z0-9_.-]+")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# `{{` and `}}` are literal braces (as in str.format); `{path}` is a placeholder; a lone brace is a mistake.
TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
FIELD_PATH = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
RESERVED_ENV = frozenset({"PATH", "HOOKBOT_EVENT", "HOOKBOT_ACTION", "HOOKBOT_DELIVERY", "HOOKBOT_REPOSITORY"})
SECRET_MIN_LENGTH = 4  # env values this long or longer are scrubbed from a hook's output; shorter ones would mangle it

_COMMON_KEYS = frozenset({"sender", "repository", "installation", "organization", "enterprise"})
# Top-level payload keys of the events hooks most often run on (GitHub Docs, "Webhook events and payloads"), so a
# placeholder that no delivery of the hook's events can fill is a config error at start, not a failure per push.
# Events not listed here are checked per delivery only.
TOP_LEVEL_KEYS: Mapping[str, frozenset[str]] = {
    "push": _COMMON_KEYS
    | {
        "ref",
        "before",
        "after",
        "created",
        "deleted",
        "forced",
        "base_ref",
        "compare",
        "commits",
        "head_commit",
        "pusher",
    },
    "issues": _COMMON_KEYS | {"action", "issue", "changes", "assignee", "label", "milestone"},
    "issue_comment": _COMMON_KEYS | {"action", "issue", "comment", "changes"},
    "pull_request": _COMMON_KEYS
    | {
        "action",
        "number",
        "pull_request",
        "changes",
        "assignee",
        "label",
        "milestone",
        "requested_reviewer",
        "requested_team",
        "before",
        "after",
        "reason",
    },
    "create": _COMMON_KEYS | {"ref", "ref_type", "master_branch", "description", "pusher_type"},
}


class HookError(HandlerError):
    """A hook could not run or did not succeed for one delivery; the message says which hook and why.

    Transient: a retry of the delivery runs the hook again (a non-zero exit, a timeout)."""


class HookRefused(HookError, ValueError):
    """A hook that cannot succeed for this delivery however often it is retried: a placeholder missing from the
    payload, an option-like or NUL-bearing value, a command that does not exist or is not executable.

    A ValueError, which the dispatcher counts as permanent (bot.github.is_permanent), so the delivery is not
    retried for it; ``hookbot deliveries retry`` still runs it again once the config or the command is fixed."""


@dataclass(frozen=True, slots=True)
class Hook:
    name: str
    events: tuple[str, ...]
    command: tuple[str, ...]
    repository: str | None = None
    branch: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    comment_output: bool = False
    cwd: Path | None = None
    # Values of the allow-listed names, taken at start; kept out of repr so they never reach a log line.
    env: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    allow_option_like: bool = False  # let a placeholder begin an argument with "-" (for commands after "--")

    def scrub(self, text: str) -> str:
        """``text`` with every value this hook gets through ``env`` replaced by ``[redacted]``: whatever the
        command prints, a secret handed to it never reaches a log record, a stored outcome or a comment."""
        for _, value in self.env:
            if len(value) >= SECRET_MIN_LENGTH and value in text:
                text = text.replace(value, REDACTED)
        return text


class _Slots:
    """A concurrency bound shared by every delivery, remade per event loop (a warm Lambda starts a new loop for
    each invocation, and an asyncio.Semaphore belongs to the loop it first waited in)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        semaphore = self._by_loop.get(loop)
        if semaphore is None:
            semaphore = self._by_loop[loop] = asyncio.Semaphore(self.limit)
        return semaphore


@dataclass(frozen=True, slots=True)
class ExecConfig:
    hooks: tuple[Hook, ...] = ()
    path: str = os.defpath
    output_limit: int = DEFAULT_OUTPUT_LIMIT
    slots: _Slots = field(default_factory=lambda: _Slots(DEFAULT_MAX_CONCURRENT), compare=False, repr=False)


def configure(section: Mapping[str, Any], env: Mapping[str, str]) -> ExecConfig | None:
    """Check every hook at start, so a typo in a placeholder or an unset env name fails here, not per push; None
    when there are no hooks.

    ``env`` is the environment snapshot bot/config.py read: ``PATH`` (plus ``LAMBDA_TASK_ROOT``, which Lambda
    sets to where the deployment package is unpacked, so packaged executables are found by name) and the values
    of each hook's ``env`` allow-list are copied from it now.
    """
    known = {"hooks", "max_concurrent", "output_limit"}
    if unknown := sorted(set(section) - known):
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; [exec] takes {', '.join(sorted(known))}")
    hooks_data = section.get("hooks", [])
    if not isinstance(hooks_data, list) or not all(isinstance(hook, Mapping) for hook in hooks_data):
        raise ValueError("hooks must be an array of tables: write each one as [[exec.hooks]]")
    hooks = tuple(_hook(index, data, env) for index, data in enumerate(hooks_data, start=1))
    names = [hook.name for hook in hooks]
    if duplicates := sorted({name for name in names if names.count(name) > 1}):
        raise ValueError(f"hook names must be unique: {', '.join(duplicates)}")
    if not hooks:
        return None
    path = env.get("PATH") or os.defpath
    if task_root := env.get("LAMBDA_TASK_ROOT"):
        path = f"{path}{os.pathsep}{task_root}"
    return ExecConfig(
        hooks=hooks,
        path=path,
        output_limit=_positive_int(section.get("output_limit", DEFAULT_OUTPUT_LIMIT), "output_limit"),
        slots=_Slots(_positive_int(section.get("max_concurrent", DEFAULT_MAX_CONCURRENT), "max_concurrent")),
    )


def narrow(config: ExecConfig, values: Mapping[str, Any]) -> ExecConfig:
    """A repository's ``hooks``: the server's hooks it names, and no others, run for it."""
    names = values["hooks"]
    defined = [hook.name for hook in config.hooks]
    if unknown := [name for name in names if name not in defined]:
        raise SettingError(
            "hooks", f"the server defines no hook named {', '.join(unknown)}; it defines: {', '.join(defined)}"
        )
    return replace(config, hooks=tuple(hook for hook in config.hooks if hook.name in names))


def _hook(index: int, data: Mapping[str, Any], env: Mapping[str, str]) -> Hook:
    known = {
        "name",
        "events",
        "command",
        "repository",
        "branch",
        "timeout",
        "comment_output",
        "cwd",
        "env",
        "allow_option_like",
    }
    name = data.get("name", f"hook-{index}")
    where = f"hook {name!r}"
    if not isinstance(name, str) or not HOOK_NAME.fullmatch(name):
        raise ValueError(f"hook {index}: name must be letters, digits, '_', '.' or '-', not {name!r}")
    for key in data:
        if key not in known:
            raise ValueError(f"{where}: unknown key `{key}`{did_you_mean(key, known)}")
    events = _string_list(data.get("events"), f"{where}: events")
    if not events:
        raise ValueError(f'{where}: events must name at least one event, e.g. ["push", "issues.opened"]')
    check_event_names(events, f"{where}: events")
    command = _string_list(data.get("command"), f"{where}: command")
    if not command or not command[0]:
        raise ValueError(f'{where}: command must be a non-empty argv list, e.g. ["./scripts/on-push.sh", "{{after}}"]')
    for item in command:
        for path in _placeholders(item, where):
            _check_top_level(path, events, where)
    timeout = data.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ValueError(f"{where}: timeout must be a positive number of seconds, not {timeout!r}")
    comment_output = data.get("comment_output", False)
    if not isinstance(comment_output, bool):
        raise ValueError(f"{where}: comment_output must be true or false, not {comment_output!r}")
    allow_option_like = data.get("allow_option_like", False)
    if not isinstance(allow_option_like, bool):
        raise ValueError(f"{where}: allow_option_like must be true or false, not {allow_option_like!r}")
    allowed = _string_list(data.get("env", []), f"{where}: env")
    for env_name in allowed:
        if not ENV_NAME.fullmatch(env_name) or env_name in RESERVED_ENV:
            raise ValueError(f"{where}: env name {env_name!r} is not allowed (PATH and HOOKBOT_* are always set)")
        if env_name not in env:
            raise ValueError(f"{where}: env lists {env_name} but hookbot's environment has no {env_name}")
        register_secret(env[env_name])  # a value handed to a hook is treated as a secret in every log line
    return Hook(
        name=name,
        events=events,
        command=command,
        repository=_optional_string(data.get("repository"), f"{where}: repository"),
        branch=_optional_string(data.get("branch"), f"{where}: branch"),
        timeout=float(timeout),
        comment_output=comment_output,
        cwd=Path(cwd) if (cwd := _optional_string(data.get("cwd"), f"{where}: cwd")) else None,
        env=tuple((env_name, env[env_name]) for env_name in allowed),
        allow_option_like=allow_option_like,
    )


def _string_list(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{what} must be a list of strings, not {value!r}")
    return tuple(value)


def _optional_string(value: Any, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {value!r}")
    return value


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what} must be a positive whole number, not {value!r}")
    return value


def _placeholders(item: str, where: str) -> list[str]:
    """The dotted paths in one argv item; a malformed placeholder or a lone brace is a config error."""
    paths = []
    for match in TEMPLATE_TOKEN.finditer(item):
        token = match.group(0)
        if token in ("{{", "}}"):
            continue
        path = match.group(1)
        if path is None or not FIELD_PATH.fullmatch(path):
            raise ValueError(
                f"{where}: {token!r} in {item!r} is not a placeholder such as {{repository.full_name}} "
                "(write {{ or }} for a literal brace)"
            )
        paths.append(path)
    return paths


def _check_top_level(path: str, events: Sequence[str], where: str) -> None:
    """Refuse a placeholder whose first key is absent from a payload of one of the hook's (known) events."""
    top = path.split(".", 1)[0]
    for name in events:
        event = name.split(".", 1)[0]
        keys = TOP_LEVEL_KEYS.get(event)
        if keys is not None and top not in keys:
            raise ValueError(
                f"{where}: {{{path}}} cannot be filled for {event} events: their payloads have no {top!r} "
                f"(they have {', '.join(sorted(keys))})"
            )


def lookup(payload: Any, path: str) -> Any:
    """The value at a dotted path; digits index lists (``commits.0.id``). KeyError names the missing part."""
    value = payload
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(part)
    return value


def _as_text(value: Any) -> str:
    """Strings as they are; numbers, booleans, objects and lists as JSON; null as an empty string."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def render_command(command: Sequence[str], payload: Mapping[str, Any], *, allow_option_like: bool = False) -> list[str]:
    """The argv for one delivery: each placeholder's value lands inside its own argv item, never re-parsed.

    Payload text is data, never an option: an item whose text begins with ``-`` because of a placeholder (an
    issue titled ``--output=pwned.txt``) is refused unless the hook allows it, for git, curl, tar and most other
    commands would read it as an option. A NUL byte cannot be passed in an argument at all.
    """

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        path = match.group(1)
        try:
            return _as_text(lookup(payload, path))
        except KeyError as exc:
            raise HookRefused(f"the payload has no {path!r} (missing {exc.args[0]!r})") from None

    argv = []
    for item in command:
        rendered = TEMPLATE_TOKEN.sub(substitute, item)
        if "\0" in rendered:
            raise HookRefused(f"a value for {item!r} holds a NUL byte, which no argument can carry")
        if rendered.startswith("-") and not item.startswith("-") and not allow_option_like:
            raise HookRefused(
                f"the value for {item!r} begins with '-' and would be read as an option "
                "(set allow_option_like = true, with '--' before it in the command, to pass such text)"
            )
        argv.append(rendered)
    return argv


def branch_of(delivery: Event) -> str | None:
    """The branch an event is about: a push's ``refs/heads/<branch>``, a pull request's base branch."""
    payload = delivery.data
    ref = payload.get("ref")
    if delivery.event == "push" and isinstance(ref, str) and ref.startswith("refs/heads/"):
        return ref.removeprefix("refs/heads/")
    pull_request = payload.get("pull_request")
    if isinstance(pull_request, Mapping):
        base = pull_request.get("base")
        if isinstance(base, Mapping) and isinstance(base.get("ref"), str):
            return str(base["ref"])
    return None


def wants(hook: Hook, delivery: Event) -> bool:
    """The hook's filters: events, then repository and branch (shell-style globs, ``release/*``)."""
    if not delivery.matches(hook.events):
        return False
    if hook.repository is not None and not fnmatch.fnmatchcase(
        (delivery.repository or "").lower(), hook.repository.lower()
    ):
        return False
    if hook.branch is not None:
        branch = branch_of(delivery)
        return branch is not None and fnmatch.fnmatchcase(branch, hook.branch)
    return True


def child_environment(hook: Hook, config: ExecConfig, delivery: Event) -> dict[str, str]:
    """The whole environment of the child: nothing of hookbot's own beyond PATH and the allow-list."""
    environment = dict(hook.env)
    environment.update(
        HOOKBOT_EVENT=delivery.event,
        HOOKBOT_ACTION=delivery.action or "",
        HOOKBOT_DELIVERY=delivery.delivery_id,
        HOOKBOT_REPOSITORY=delivery.repository or "",
        PATH=config.path,
    )
    return environment


@dataclass(slots=True)
class Capture:
    """Up to ``limit`` bytes of one output stream; the rest is read (so the child never blocks on a full pipe)
    and dropped."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    truncated: bool = False

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        self.data += chunk[:room]
        self.truncated = self.truncated or len(chunk) > room

    def text(self) -> str:
        suffix = "\n[output trimmed]" if self.truncated else ""
        return self.data.decode("utf-8", "replace") + suffix


class Collector(asyncio.SubprocessProtocol):
    """Collects a child's output as it arrives and says when it has exited and closed every pipe.

    asyncio's transport API is used rather than ``create_subprocess_exec`` because its ``close()`` drops our
    ends of the pipes: ``Process.wait()`` waits for every pipe to close, which a process that left the group
    (``setsid``) while holding stdout could put off forever.
    """

    def __init__(self, limit: int, finished: asyncio.Future[None]) -> None:
        self.outputs = {1: Capture(limit), 2: Capture(limit)}
        self.finished = finished

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        self.outputs[fd].add(data if isinstance(data, bytes) else data.encode())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done():
            self.finished.set_result(None)


@dataclass(frozen=True, slots=True)
class Run:
    hook: Hook
    argv: list[str]
    exit_code: int | None  # None: still running at the timeout, then killed
    timed_out: bool
    stdout: str
    stderr: str
    ms: float


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group has already gone
        os.killpg(pid, signal.SIGKILL)


def hook_argv(hook: Hook, delivery: Event) -> list[str]:
    try:
        return render_command(hook.command, delivery.data, allow_option_like=hook.allow_option_like)
    except HookRefused as exc:
        raise HookRefused(f"hook {hook.name!r}: {exc} in this {delivery.describe()} delivery") from None


async def run_hook(hook: Hook, config: ExecConfig, delivery: Event) -> Run:
    """Run one hook to completion or to its timeout; then its whole process group is killed.

    The payload is written to stdin (a child that exits without reading it is not an error); completion means
    the child has exited and closed stdout and stderr, so its output is all read. Whatever the hook started in
    its process group (a daemon it forked, a ``cmd &``) is killed when it is done, so nothing outlives it; only a
    process that leaves the group (``setsid``) can escape, and it cannot hold the worker past the timeout.
    """
    argv = hook_argv(hook, delivery)
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    async with config.slots.get():
        started = time.perf_counter()
        try:
            transport, collector = await loop.subprocess_exec(
                lambda: Collector(config.output_limit, finished),
                *argv,
                env=child_environment(hook, config, delivery),
                cwd=hook.cwd,
                start_new_session=True,  # its own process group, so everything it started can be killed with it
            )
        except (FileNotFoundError, PermissionError, NotADirectoryError, ValueError) as exc:
            # not found, not executable, a missing cwd: no retry can fix them, only the config or the host
            raise HookRefused(f"hook {hook.name!r} could not start {argv[0]!r}: {exc}") from None
        except OSError as exc:  # out of processes or file descriptors: may pass on a retry
            raise HookError(f"hook {hook.name!r} could not start {argv[0]!r}: {exc}") from None
        timed_out = True
        try:
            stdin = transport.get_pipe_transport(0)
            assert isinstance(stdin, asyncio.WriteTransport)
            stdin.write(orjson.dumps(delivery.data))
            stdin.close()
            async with asyncio.timeout(hook.timeout):
                await finished
            timed_out = False
        except TimeoutError:
            pass
        finally:
            exit_code = transport.get_returncode()
            _kill_group(transport.get_pid())  # done, timed out or hookbot stopping: leave nothing behind
            transport.close()
    stdout, stderr = hook.scrub(collector.outputs[1].text()), hook.scrub(collector.outputs[2].text())
    ms = round((time.perf_counter() - started) * 1000, 2)
    return Run(hook, argv, exit_code, timed_out, stdout, stderr, ms)


def marker(hook: Hook, delivery: Event) -> str:
    return hidden_marker("exec", hook=hook.name, delivery=delivery.delivery_id)


async def post_output(delivery: Event, gh: GitHubAPI, ctx: Context[ExecConfig], run: Run) -> None:
    """Comment the trimmed stdout once per delivery and hook: the hidden marker makes a retry find its comment."""
    text = run.stdout.strip()
    if not is_about_issue(delivery) or not text:
        ctx.log.info("hook %s: no issue or pull request to comment on, or no output", run.hook.name)
        return
    if len(text) > COMMENT_LIMIT:
        text = text[:COMMENT_LIMIT] + "\n[output trimmed]"
    await comment_once(gh, issue_path(delivery, "comments"), text, marker(run.hook, delivery))


async def _run_and_report(hook: Hook, delivery: Event, gh: GitHubAPI, ctx: Context[ExecConfig]) -> None:
    if ctx.dry_run:
        argv = hook_argv(hook, delivery)
        ctx.actions.record(f"run hook {hook.name}: {shlex.join(argv)}")
        return
    # A command outlives a kill -9 of hookbot (it has its own session): marked running first, the delivery is run
    # again after a crash only once the GitHub request timeout has passed, as for a comment in flight.
    await before_effect()
    run = await run_hook(hook, ctx.config, delivery)
    fields = {
        "delivery": delivery.delivery_id,
        "hook": hook.name,
        "exit_code": run.exit_code,
        "ms": run.ms,
        "stdout": run.stdout,
        "stderr": run.stderr,
    }
    if run.timed_out:
        ctx.log.warning("exec hook timed out; its process group was killed", extra={"fields": fields})
        why = "" if run.exit_code is None else f" (it exited with {run.exit_code}, but left its output open)"
        raise HookError(f"hook {hook.name!r} timed out after {hook.timeout:g}s{why}; its process group was killed")
    if run.exit_code != 0:
        ctx.log.warning("exec hook failed", extra={"fields": fields})
        assert run.exit_code is not None
        status = f"exited with {run.exit_code}" if run.exit_code > 0 else f"was killed by signal {-run.exit_code}"
        last_line = run.stderr.strip().splitlines()[-1:]
        raise HookError(f"hook {hook.name!r} {status}" + (f": {last_line[0]}" if last_line else ""))
    ctx.log.info("exec hook succeeded", extra={"fields": fields})
    ctx.actions.record(f"ran hook {hook.name}: {shlex.join(run.argv)}")
    if hook.comment_output:
        await post_output(delivery, gh, ctx, run)


async def _run_once(hook: Hook, event: Event, gh: GitHubAPI, ctx: Context[ExecConfig]) -> None:
    """Run a hook unless it already succeeded for this delivery; mark it when it does."""
    if ctx.steps is not None and await ctx.steps.done(f"hook:{hook.name}"):
        ctx.log.info("hook %s already succeeded for this delivery; not run again", hook.name)
        return
    await _run_and_report(hook, event, gh, ctx)
    if ctx.steps is not None and not ctx.dry_run:
        await ctx.steps.mark_done(f"hook:{hook.name}")


async def run_matching_hooks(event: Event, gh: GitHubAPI, ctx: Context[ExecConfig]) -> None:
    """Run every hook that wants this delivery, side by side.

    Each hook's success is remembered for the delivery, so a retry or a redelivery runs only the hooks that
    failed. Any failure fails the plugin; when every failure is one no retry can fix (HookRefused), so is the
    plugin's, and the delivery is not retried for nothing.
    """
    hooks = [hook for hook in ctx.config.hooks if wants(hook, event)]
    results = await asyncio.gather(*(_run_once(hook, event, gh, ctx) for hook in hooks), return_exceptions=True)
    failures = [result for result in results if isinstance(result, BaseException)]
    for failure in failures:
        if not isinstance(failure, Exception):
            raise failure  # cancellation: let it through
    if failures:
        message = "; ".join(str(failure) for failure in failures)
        if all(isinstance(failure, HookRefused) for failure in failures):
            raise HookRefused(message)
        raise HookError(message)

"""The ``[lambda_deploy]`` section as typed rules, checked when hookbot starts.

Every rule is checked here, once, so that a typo in a placeholder or an alias stops hookbot at start with a line
naming the rule, rather than failing on the first push. The rules also know how to fill in their own templates,
so the handlers never format strings themselves.
"""

from __future__ import annotations

import fnmatch
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, TypeVar

from bot.config_schema import did_you_mean
from bot.plugin import SettingError
from handlers.lambda_deploy.errors import Refused
from handlers.lambda_deploy.ordering import DeployQueue

PUSH_PLACEHOLDERS = frozenset({"repository", "repository_name", "owner", "sha", "short_sha", "branch"})
S3_PLACEHOLDERS = frozenset({"stem"})
RULE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
ALIAS_NAME = re.compile(r"(?!^[0-9]+$)^[A-Za-z0-9_-]{1,128}$")
# A bare Lambda function name (AWS Lambda API reference, CreateFunction: FunctionName). Anything else (an ARN, a
# qualifier, a path) would let whoever controls a placeholder's value aim the deployment at another function.
FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def render_function_name(template: str, values: Mapping[str, str]) -> str:
    """The function a rule names for these values; Refused when a placeholder makes anything but a bare name.

    A template without placeholders is the operator's own text and is taken as written (it may be an ARN); a
    value that comes from outside (an uploaded key, a repository's name) must be a plain name, and so must the
    result, so no value can smuggle in an ARN, a qualifier or another account's function.
    """
    used = _placeholders(template)
    if not used:
        return template
    for name in sorted(used):
        if not FUNCTION_NAME.fullmatch(values[name]):
            raise Refused(
                f"{{{name}}} is {values[name]!r}, which is not a Lambda function name "
                "(1 to 64 letters, digits, '-' or '_')"
            )
    rendered = template.format(**values)
    if not FUNCTION_NAME.fullmatch(rendered):
        raise Refused(f"{rendered!r} is not a Lambda function name (1 to 64 letters, digits, '-' or '_')")
    return rendered


def bare_function_name(name: str) -> str:
    """``my-fn`` from ``my-fn``, ``my-fn:live``, ``123456789012:function:my-fn`` or a full ARN (with qualifier)."""
    parts = name.split(":")
    if "function" in parts[:-1]:
        return parts[parts.index("function") + 1]
    return parts[0]


@dataclass(frozen=True, slots=True)
class CreateSpec:
    """What CreateFunction needs when the function does not exist yet."""

    role: str
    handler: str
    runtime: str
    memory: int = 128
    timeout: int = 3


@dataclass(frozen=True, slots=True)
class PushRule:
    repository: str
    branch: str
    function: str
    artifact: str  # s3://bucket/key template; with source = "repository", where the packaged commit is uploaded
    source: Literal["s3", "repository"] = "s3"
    subdir: str = ""
    alias: str | None = None
    environment: str = "production"
    create: CreateSpec | None = None
    name: str | None = None  # what a repository's .github/hookbot.yml names it by in `rules`

    def matches(self, repository: str, branch: str | None = None) -> bool:
        return self.repository.lower() == repository.lower() and (branch is None or branch == self.branch)

    def _values(self, repository: str, sha: str) -> dict[str, str]:
        owner, _, name = repository.partition("/")
        return {
            "repository": repository,
            "repository_name": name,
            "owner": owner,
            "sha": sha,
            "short_sha": sha[:7],
            "branch": self.branch,
        }

    def function_name(self, repository: str) -> str:
        """The same for every commit: a function name may not use {sha} (checked at start). Refused when a
        placeholder's value (a repository's name with a dot, say) is not a bare function name."""
        return render_function_name(self.function, self._values(repository, ""))

    def artifact_location(self, repository: str, sha: str) -> tuple[str, str]:
        """(bucket, key) of the commit's artifact."""
        return parse_s3_url(self.artifact.format(**self._values(repository, sha)))


@dataclass(frozen=True, slots=True)
class S3Rule:
    bucket: str
    function: str
    prefix: str = ""
    pointer: str | None = None
    suffix: str = ".zip"
    alias: str | None = None
    create: CreateSpec | None = None
    functions: tuple[str, ...] = ()  # globs the function name must match ("app-*"); empty: any bare name
    name: str | None = None

    def matches(self, bucket: str, key: str) -> bool:
        if bucket != self.bucket or not key.startswith(self.prefix):
            return False
        if self.pointer is not None:
            return key == self.prefix + self.pointer
        return key.endswith(self.suffix)

    def function_name(self, key: str) -> str:
        """The function for an artifact key, or Refused.

        ``{stem}`` is the key after the rule's prefix without the rule's suffix, so ``drop/app.zip`` gives ``app``
        while ``drop/team/app.zip``, ``drop/app.v2.zip`` and ``drop/arn:aws:lambda:...:function:x.zip`` give no
        bare name and are refused: whoever may upload under the prefix must not choose an arbitrary function.
        ``functions`` narrows the names further.
        """
        stem = key.removeprefix(self.prefix)
        if self.suffix and stem.endswith(self.suffix):
            stem = stem[: -len(self.suffix)]
        name = render_function_name(self.function, {"stem": stem})
        if self.functions and not any(fnmatch.fnmatchcase(name, glob) for glob in self.functions):
            allowed = ", ".join(self.functions)
            raise Refused(f"{name!r} is not one of the functions this rule may deploy ({allowed})")
        return name


@dataclass(frozen=True, slots=True)
class LambdaDeployConfig:
    """What the handlers get as ``ctx.config``: the rules, and the queue that orders deployments per function."""

    push: tuple[PushRule, ...] = ()
    s3: tuple[S3Rule, ...] = ()
    queue: DeployQueue = field(default_factory=DeployQueue, compare=False, repr=False)
    own_function: str | None = None  # the Lambda function hookbot runs as (none in a container)

    def check_target(self, function: str) -> str:
        """``function`` when hookbot may deploy to it; Refused for the function hookbot itself runs as, which a
        deployment would replace with someone else's code (and the worker that is deploying with it)."""
        if self.own_function and bare_function_name(function) == bare_function_name(self.own_function):
            raise Refused(f"{function!r} is the function hookbot itself runs as; it never deploys over itself")
        return function


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def _check_template(template: str, allowed: frozenset[str], where: str) -> None:
    unknown = _placeholders(template) - allowed
    if unknown:
        raise ValueError(f"{where} uses unknown placeholder(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def _check_alias(alias: Any, where: str) -> str | None:
    if alias is None:
        return None
    if not isinstance(alias, str) or not ALIAS_NAME.match(alias):
        raise ValueError(f"{where} alias {alias!r} is not a valid Lambda alias name (letters, digits, - and _)")
    return alias


def _create_spec(value: Any, where: str) -> CreateSpec | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} create must be a table with role, handler and runtime")
    try:
        return CreateSpec(**dict(value))
    except TypeError as exc:
        raise ValueError(f"{where} create: {exc} (keys: role, handler, runtime, memory, timeout)") from None


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` as (bucket, key)."""
    if not url.startswith("s3://") or "/" not in url[5:]:
        raise ValueError(f"{url!r} is not an s3://bucket/key URL")
    bucket, _, key = url[5:].partition("/")
    if not bucket or not key:
        raise ValueError(f"{url!r} is not an s3://bucket/key URL")
    return bucket, key


def _push_rule(raw: Mapping[str, Any], index: int) -> PushRule:
    where = f"[[lambda_deploy.push]] #{index + 1}"
    data = dict(raw)
    for required in ("repository", "branch", "function", "artifact"):
        if not isinstance(data.get(required), str) or not data[required]:
            raise ValueError(f'{where} needs {required} = "..."')
    source = data.get("source", "s3")
    if source not in ("s3", "repository"):
        raise ValueError(f'{where} source must be "s3" or "repository", not {source!r}')
    parse_s3_url(data["artifact"])
    _check_template(data["artifact"], PUSH_PLACEHOLDERS, f"{where} artifact")
    # No {sha} in a function name: a rollback or a /deploy must find the same function for every commit.
    _check_template(data["function"], PUSH_PLACEHOLDERS - {"sha", "short_sha"}, f"{where} function")
    if source == "repository" and not _placeholders(data["artifact"]) & {"sha", "short_sha"}:
        raise ValueError(f'{where} with source = "repository" needs {{sha}} in artifact, so each commit has its key')
    return _finish_rule(PushRule, data, where)


RuleT = TypeVar("RuleT", "PushRule", "S3Rule")


def _finish_rule(rule_type: type[RuleT], data: dict[str, Any], where: str) -> RuleT:
    """The settings both kinds of rule share (alias, create), then the rule itself; an unknown key says where."""
    known = {item.name for item in fields(rule_type)}
    for key in data:
        if key not in known:
            raise ValueError(f"{where}: unknown key `{key}`{did_you_mean(key, known)}")
    name = data.get("name")
    if name is not None and (not isinstance(name, str) or not RULE_NAME.fullmatch(name)):
        raise ValueError(f"{where} name must be letters, digits, '_', '.' or '-', not {name!r}")
    data["alias"] = _check_alias(data.get("alias"), where)
    data["create"] = _create_spec(data.get("create"), where)
    try:
        return rule_type(**data)
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _s3_rule(raw: Mapping[str, Any], index: int) -> S3Rule:
    where = f"[[lambda_deploy.s3]] #{index + 1}"
    data = dict(raw)
    for required in ("bucket", "function"):
        if not isinstance(data.get(required), str) or not data[required]:
            raise ValueError(f'{where} needs {required} = "..."')
    _check_template(data["function"], S3_PLACEHOLDERS, f"{where} function")
    globs = data.get("functions", [])
    if not isinstance(globs, list) or not all(isinstance(glob, str) and glob for glob in globs):
        raise ValueError(f'{where} functions must be a list of name globs, e.g. ["app-*"], not {globs!r}')
    data["functions"] = tuple(globs)
    return _finish_rule(S3Rule, data, where)


def configure(section: Mapping[str, Any], *, own_function: str | None = None) -> LambdaDeployConfig | None:
    """Check every rule at start, so a typo in a placeholder fails now rather than on the first push.

    With no rule at all there is nothing to deploy: the plugin is not loaded, so it costs nothing per delivery and
    does not answer a ``/deploy`` meant for some other bot with "No Lambda function is deployed".
    ``own_function`` is the function hookbot runs as (on Lambda), never deployed to.
    """
    unknown = set(section) - {"push", "s3"}
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)}; use [[lambda_deploy.push]] and [[lambda_deploy.s3]]")
    push = tuple(_push_rule(raw, i) for i, raw in enumerate(section.get("push", [])))
    s3 = tuple(_s3_rule(raw, i) for i, raw in enumerate(section.get("s3", [])))
    names = [name for name in (*(rule.name for rule in push), *(rule.name for rule in s3)) if name]
    if duplicates := sorted({name for name in names if names.count(name) > 1}):
        raise ValueError(f"rule names must be unique: {', '.join(duplicates)}")
    return LambdaDeployConfig(push=push, s3=s3, own_function=own_function or None) if push or s3 else None


def narrow(config: LambdaDeployConfig, values: Mapping[str, Any]) -> LambdaDeployConfig:
    """A repository's ``rules``: only the server's push rules it names apply to its pushes and ``/deploy``s.

    The deployment queue is the server's own object, so deployments stay ordered across every repository's config.
    """
    names = values["rules"]
    defined = [rule.name for rule in config.push if rule.name]
    if unknown := [name for name in names if name not in defined]:
        raise SettingError(
            "rules",
            f"the server defines no push rule named {', '.join(unknown)}; "
            f"named push rules: {', '.join(defined) or 'none (a rule gets one with name = ...)'}",
        )
    return replace(config, push=tuple(rule for rule in config.push if rule.name in names))

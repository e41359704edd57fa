"""Settings from the TOML file and the environment, read once at start into plain typed values.

Every core setting is declared once, in ``CORE_SECTIONS`` (bot/settings.py), with the vocabulary of
bot/config_schema.py: parsing, defaults, the unknown-key check, ``hookbot config show`` and README's reference
table all come from that declaration. A plugin declares its own section the same way (a module-level
``SETTINGS = Section(...)``), so its keys are checked, with a "did you mean" for a typo, before its ``setup()`` runs.

Only this module (and the CLI that calls it) reads environment variables; handlers get their own config section.
Precedence: environment variable (when set and not empty), then the config file, then the default.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bot.config_schema import ConfigError, Resolved, Section, closest, did_you_mean
from bot.settings import (
    CORE_SECTION_NAMES,
    CORE_SECTIONS,
    TOP_LEVEL_KEYS,
    DedupeSettings,
    GitHubSettings,
    RelaySettings,
    ServerSettings,
    Settings,
    SnsSettings,
    core_section,
)

# An HMAC keyed with an empty or short secret is one an attacker can compute or guess: hookbot refuses to start
# with one rather than accept deliveries signed with it. GitHub accepts any secret, so the check is ours.
MIN_SECRET_BYTES = 16


def check_webhook_secret(value: str, source: str) -> str:
    """``value`` when it is a webhook secret worth the name; else a ConfigError naming ``source`` and the fix."""
    size = len(value.encode())
    if value.strip() and size >= MIN_SECRET_BYTES:
        return value
    what = "blank" if not value.strip() else f"only {size} bytes"
    raise ConfigError(
        f"the webhook secret in {source} is {what}; it needs at least {MIN_SECRET_BYTES}: make one with "
        "`openssl rand -hex 32` and set the same value in GitHub's webhook settings"
    )


def check_webhook_secrets(github: Mapping[str, Resolved], env: Mapping[str, str]) -> None:
    """The configured webhook secret and every previous one, each named by where it came from when refused."""
    current = github["webhook_secret"]
    if current.value is not None:
        source = f"[github] webhook_secret of {current.origin}"
        if current.source == "env":
            references = (
                ("SSM parameter", env.get("GITHUB_WEBHOOK_SECRET_SSM_PARAMETER", "").strip()),
                ("Secrets Manager secret", env.get("GITHUB_WEBHOOK_SECRET_SECRETS_MANAGER_ID", "").strip()),
            )
            source = current.origin + "".join(f" (from {kind} {ref})" for kind, ref in references if ref)
        check_webhook_secret(current.value, source)
    previous = github["previous_secrets"]
    for index, value in enumerate(previous.value):
        check_webhook_secret(value, f"[github] previous_secrets[{index}] of {previous.origin}")


def _read_file(path: Path) -> dict[str, Any]:
    import tomllib  # only when there is a file: a Lambda without a bundled config never pays for the parser

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (set HOOKBOT_CONFIG or --config)") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory (set HOOKBOT_CONFIG or --config to a file)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def config_path(env: Mapping[str, str], config_path: str | Path | None = None) -> Path | None:
    """``--config``, else ``HOOKBOT_CONFIG``, else ``./hookbot.toml`` when there is one."""
    path_text = config_path or env.get("HOOKBOT_CONFIG")
    if path_text:
        return Path(path_text)
    return Path("hookbot.toml") if Path("hookbot.toml").is_file() else None


def check_top_level(data: Mapping[str, Any], plugin_names: Collection[str], where: str) -> None:
    """Refuse a table that neither hookbot nor an installed plugin reads (``[greeterr]``), and stray keys."""
    known = CORE_SECTION_NAMES | set(plugin_names)
    for name, value in data.items():
        if isinstance(value, Mapping) or (isinstance(value, list) and name not in TOP_LEVEL_KEYS):
            if name not in known:
                raise ConfigError(f"{where}: unknown section [{name}]{did_you_mean(name, known)}")
        elif name not in TOP_LEVEL_KEYS:
            homes = {setting.key: section.name for section in CORE_SECTIONS for setting in section.settings}
            guess = closest(name, homes)
            hint = f"; did you mean `{guess}` under [{homes[guess]}]?" if guess else " (settings go under a [section])"
            raise ConfigError(f"{where}: unknown key `{name}` outside any section{hint}")


def resolve(data: Mapping[str, Any], env: Mapping[str, str], where: str) -> dict[str, dict[str, Resolved]]:
    """Each core setting's value from the environment, the file or the default, checked and typed."""
    result: dict[str, dict[str, Resolved]] = {}
    for section in CORE_SECTIONS:
        table = data.get(section.name, {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}: [{section.name}] in the config file must be a table")
        section.check(table, where)
        values: dict[str, Resolved] = {}
        for setting in section.settings:
            env_value = env.get(setting.env) if setting.env else None
            if setting.env and env_value:
                value = setting.parse(env_value, setting.env)
                values[setting.key] = Resolved(section.name, setting, value, "env", setting.env)
            elif setting.key in table:
                value = setting.parse(table[setting.key], f"{where}: [{section.name}] {setting.key}")
                values[setting.key] = Resolved(section.name, setting, value, "file", where)
            else:
                values[setting.key] = Resolved(section.name, setting, setting.default, "default", "default")
        result[section.name] = values
    if "handlers" in data and "handlers" not in data.get("hookbot", {}):
        setting = core_section("hookbot").setting("handlers")
        value = setting.parse(data["handlers"], f"{where}: handlers")
        result["hookbot"]["handlers"] = Resolved("hookbot", setting, value, "file", where)
    return result


def load_settings(env: Mapping[str, str], config_path_: str | Path | None = None) -> Settings:
    """Build Settings from an environment mapping and an optional TOML file (pure apart from reading files).

    Secrets named by ``<NAME>_SSM_PARAMETER`` / ``<NAME>_SECRETS_MANAGER_ID`` are fetched first (bot/aws_secrets.py).
    Plugin sections are checked when the plugins load (bot/plugins.py), which is where their names are known.
    """
    from bot.aws_secrets import resolve_secrets  # imported here: it raises this module's ConfigError

    env = resolve_secrets(env)
    path = config_path(env, config_path_)
    data = _read_file(path) if path else {}
    where = str(path) if path else "config"
    resolved = resolve(data, env, where)
    check_webhook_secrets(resolved["github"], env)

    def values(section: str) -> dict[str, Any]:
        return {key: item.value for key, item in resolved[section].items()}

    gh = values("github")
    key_path = gh.pop("private_key_path")
    if not gh["private_key"] and key_path:
        try:
            gh["private_key"] = Path(key_path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read GITHUB_PRIVATE_KEY_PATH {key_path}: {exc.strerror}") from None
    if bool(gh["app_id"]) != bool(gh["private_key"]):
        raise ConfigError(
            "GitHub App auth needs both GITHUB_APP_ID and GITHUB_PRIVATE_KEY (or GITHUB_PRIVATE_KEY_PATH)"
        )
    gh["api_url"] = gh["api_url"].rstrip("/")
    server = ServerSettings(**values("server"))
    if server.max_buffered_bytes < server.max_body_bytes:
        raise ConfigError(
            f"[server] max_buffered_bytes ({server.max_buffered_bytes}) must be at least max_body_bytes "
            f"({server.max_body_bytes}): otherwise a body of the allowed size could never be read"
        )
    core = values("hookbot")
    log_format = core["log_format"]
    if log_format is not None and log_format not in ("console", "json"):
        raise ConfigError(f"log format must be `console` or `json`, not {log_format!r}")

    return Settings(
        github=GitHubSettings(**gh),
        server=server,
        sns=SnsSettings(**values("sns")),
        dedupe=DedupeSettings(**values("dedupe")),
        relay=RelaySettings(**values("relay")),
        state_dir=core["state_dir"],
        dry_run=core["dry_run"],
        handlers=core["handlers"],
        log_format=log_format,
        log_level=core["log_level"],
        plugin_sections={
            k: v for k, v in data.items() if k not in CORE_SECTION_NAMES and k not in TOP_LEVEL_KEYS
        },
        aws_endpoint_url=env.get("AWS_ENDPOINT_URL"),
        aws_endpoint_url_sns=env.get("AWS_ENDPOINT_URL_SNS"),
        config_file=path,
        resolved=tuple(item for section in resolved.values() for item in section.values()),
        process_env=MappingProxyType(dict(env)),
    )


def shown_value(item: Resolved) -> str:
    """A value as ``config show`` prints it: TOML-like, secrets masked."""
    value = item.value
    if value is None or value == ():
        return "(not set)" if value is None else "[]"
    if item.setting.secret:
        return "***"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{part}"' for part in value) + "]"
    if isinstance(value, str | Path):
        return f'"{value}"'
    return str(value)


def reference_table(sections: Iterable[Section] = CORE_SECTIONS) -> str:
    """README's table of every core setting, generated from the declaration (a test keeps README in step)."""
    lines = ["| setting | environment | default | meaning |", "|---|---|---|---|"]
    for section in sections:
        for setting in section.settings:
            default = setting.default
            if default is None:
                shown = "unset"
            elif isinstance(default, bool):
                shown = f"`{str(default).lower()}`"
            elif isinstance(default, tuple):
                shown = "`[]`"
            elif isinstance(default, str | Path):
                shown = f'`"{default}"`'
            else:
                shown = f"`{default}`"
            env = f"`{setting.env}`" if setting.env else ""
            lines.append(f"| `[{section.name}] {setting.key}` | {env} | {shown} | {setting.help} |")
    return "\n".join(lines)

"""One config schema, checked at start: each kind of typo stops hookbot with the file, the key and a suggestion;
`hookbot config check` and `config show`; live mode that refuses to act without the credentials it needs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import reference_table
from bot.config_schema import ConfigError
from tests.helpers import FIXTURES, ROOT

README = ROOT / "README.md"


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        # a section nothing reads
        ("[greeterr]\nissue_comment = 'hi'\n", "unknown section [greeterr]; did you mean `greeter`?"),
        # a core key
        ("[server]\nprot = 1\n", "unknown key `prot` in [server]; did you mean `port`?"),
        # a key outside any section
        ("prot = 1\n", "unknown key `prot` outside any section; did you mean `port` under [server]?"),
        # a plugin's declared key
        ("[greeter]\nissue_coment = 'hi'\n", "unknown key `issue_coment` in [greeter]; did you mean `issue_comment`?"),
        # an event GitHub does not send
        (
            '[[exec.hooks]]\nevents = ["pushh"]\ncommand = ["true"]\n',
            "[exec] hook 'hook-1': events: unknown event `pushh`; did you mean `push`?",
        ),
        (
            '[audit]\ndestination = "file:///tmp"\nevents = ["isues.opened"]\n',
            "unknown event `isues`; did you mean `issues`?",
        ),
        # a template placeholder, listing the allowed names
        (
            '[greeter]\nissue_comment = "Hi {autor}"\n',
            "[greeter] issue_comment uses {autor}; a greeting may use {author}, {repository}, {number}, {title}; "
            "did you mean {author}?",
        ),
        # a plugin name
        ('[hookbot]\nhandlers = ["greter"]\n', "handler 'greter' is enabled in config but not installed; did you mean"),
        # a key of a rule inside a plugin's section
        (
            '[[lambda_deploy.s3]]\nbucket = "b"\nfunction = "f"\nprefx = "drop/"\n',
            "[[lambda_deploy.s3]] #1: unknown key `prefx`; did you mean `prefix`?",
        ),
        # a value of the wrong type
        ("[server]\nport = 'eighty'\n", "[server] port must be a whole number, not 'eighty'"),
    ],
)
def test_each_typo_stops_the_start_naming_file_key_and_closest_name(
    bare_env: Path, capsys: pytest.CaptureFixture[str], toml: str, expected: str
) -> None:
    config = bare_env / "hookbot.toml"
    config.write_text(toml)
    assert main(["config", "check"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hookbot: hookbot.toml: "), err
    assert expected in err
    assert len(err.splitlines()) == 1
    # serve and replay stop on the same line before doing anything
    assert main(["replay", str(FIXTURES / "github/ping.json"), "--event", "ping"]) == 2
    assert expected in capsys.readouterr().err


def test_config_check_validates_a_file_without_starting(bare_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = bare_env / "elsewhere.toml"
    config.write_text('[server]\nport = 9000\n[greeter]\nissue_comment = "Hi {author}"\n')
    assert main(["config", "check", "--config", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{config}: ok"
    assert "plugins loaded: greeter" in out
    assert "plugin audit not loaded: nothing to do under this config" in out
    assert out[-1] == "mode: dry-run; GitHub auth: none"
    assert not (bare_env / "state").exists(), "checking must not create state"


def test_config_show_gives_each_value_and_its_source_with_secrets_masked(
    bare_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (bare_env / "hookbot.toml").write_text(
        '[server]\nport = 9000\n[github]\nwebhook_secret = "file-secret-0123456789"\n'
    )
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_abcdefghijklmnopqrstuvwxyz0123")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    lines = {re.split(r"\s{2,}", line)[0]: re.split(r"\s{2,}", line)[1:] for line in out.splitlines()[2:]}
    assert lines["[server] port"] == ["9000", "file"]
    assert lines["[server] host"] == ['"127.0.0.1"', "default"]
    assert lines["[github] token"] == ["***", "env GITHUB_TOKEN"]
    assert lines["[github] webhook_secret"] == ["***", "file"]
    assert lines["[hookbot] state_dir"][1] == "env HOOKBOT_STATE_DIR"
    assert lines["[greeter] issue_comment"][1] == "default"
    assert "ghp_abcdefghijklmnopqrstuvwxyz0123" not in out and "file-secret-0123456789" not in out
    assert out.splitlines()[:2] == ["# config file: hookbot.toml", "# mode: live; GitHub auth: token"]


def test_plugin_sections_are_declared_the_same_way() -> None:
    from bot.plugin import Setup
    from handlers import greeter

    assert greeter.setup(Setup("greeter", {}, {})) == greeter.GreeterConfig()
    with pytest.raises(ConfigError, match=r"\[greeter\] issue_comment must be a string"):
        greeter.SETTINGS.parse({"issue_comment": ["x"]})


def test_readme_reference_table_is_generated_from_the_declaration() -> None:
    """README's table of settings is `hookbot config reference`; regenerate it when a setting changes."""
    text = README.read_text()
    start, end = "<!-- settings-reference:start -->\n", "\n<!-- settings-reference:end -->"
    assert start in text and end in text, "README lost its settings-reference markers"
    table = text.split(start, 1)[1].split(end, 1)[0]
    assert table == reference_table(), "README is out of step: paste the output of `hookbot config reference`"


LIVE_REFUSAL = (
    "hookbot: live mode was asked for but no GitHub credentials are set, and greeter needs them: set GITHUB_TOKEN "
    "(or GITHUB_APP_ID and GITHUB_PRIVATE_KEY), or limit [hookbot] handlers to plugins that do not call GitHub"
)


def test_live_without_credentials_refuses_to_start_naming_the_plugins_and_the_ways_out(
    bare_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOKBOT_DRY_RUN", "0")
    assert main(["serve", "--port", "1"]) == 2
    assert capsys.readouterr().err.startswith(LIVE_REFUSAL)
    assert main(["config", "check"]) == 2
    assert capsys.readouterr().err.startswith(LIVE_REFUSAL)


def test_replay_live_without_credentials_refuses_instead_of_staying_in_dry_run(
    bare_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(FIXTURES / "github/issues.opened.json"), "--event", "issues", "--live"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(LIVE_REFUSAL) and captured.out == ""


def test_an_s3_only_auto_deployer_runs_live_without_github_credentials(
    bare_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (bare_env / "hookbot.toml").write_text(
        '[hookbot]\nhandlers = ["lambda_deploy"]\n[[lambda_deploy.s3]]\nbucket = "artifacts"\nfunction = "{stem}"\n'
    )
    monkeypatch.setenv("HOOKBOT_DRY_RUN", "0")
    assert main(["config", "check"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "mode: live; GitHub auth: none"
    # a push rule reports through GitHub Deployments: then the credentials are needed
    with (bare_env / "hookbot.toml").open("a") as fh:
        fh.write('[[lambda_deploy.push]]\nrepository = "o/r"\nbranch = "main"\nfunction = "f"\n')
        fh.write('artifact = "s3://b/{sha}.zip"\n')
    assert main(["config", "check"]) == 2
    assert "and lambda_deploy needs them" in capsys.readouterr().err


def test_reference_table_lists_every_core_setting_with_its_variable() -> None:
    table = reference_table()
    assert "| `[server] port` |  | `8080` | port to listen on |" in table
    assert "| `[hookbot] dry_run` | `HOOKBOT_DRY_RUN` | unset |" in table
    assert "`[hookbot] log_format` | `HOOKBOT_LOG_FORMAT`" in table

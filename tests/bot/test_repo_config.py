"""Per-repository configuration (.github/hookbot.yml): reading it safely, narrowing under the server's ceiling,
fetching and caching it through the contents API, and reporting a broken one as a check run."""

from __future__ import annotations

import asyncio
import json
import logging
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import pytest

from bot.aws_lambda import LambdaEntry
from bot.cli import main
from bot.delivery import Delivery
from bot.plugins import load_plugins
from bot.repo_config import OFF, effective_configs
from bot.repo_config_yaml import RepoConfigError, parse_repo_file
from bot.runtime import Runtime, server_ceiling
from handlers.greeter import MARKER
from tests.fake_github import FakeGitHub
from tests.helpers import ROOT, fixture_bytes, github_headers, make_settings
from tests.lambda_events import function_url_event

REPO = "Codertocat/Hello-World"
ISSUE_COMMENTS = f"/repos/{REPO}/issues/1/comments"
CONTENTS = f"/repos/{REPO}/contents/.github/hookbot.yml"
ORG_CONTENTS = "/repos/Codertocat/.github/contents/.github/hookbot.yml"
SERVER_GREETING = "Thanks for opening this issue, @Codertocat! A maintainer will take a look soon."

SERVER_CONFIG = """
[hookbot]
handlers = ["greeter", "exec", "lambda_deploy", "audit"]

[greeter]
skip_authors = ["renovate*"]

[[exec.hooks]]
name = "lint"
events = ["push"]
command = ["true"]

[[exec.hooks]]
name = "notify"
events = ["push"]
command = ["true"]

[[lambda_deploy.push]]
name = "app"
repository = "Codertocat/Hello-World"
branch = "master"
function = "app-fn"
artifact = "s3://artifacts/app/{sha}.zip"

[[lambda_deploy.push]]
name = "docs"
repository = "Codertocat/Hello-World"
branch = "master"
function = "docs-fn"
artifact = "s3://artifacts/docs/{sha}.zip"

[audit]
destination = "file:///tmp/hookbot-audit-unused/"
"""


def resolve(text: str, tmp_path: Path, config: str = SERVER_CONFIG) -> dict[str, Any]:
    """The effective configs for a repository file under ``config``, as the server would resolve them."""
    settings = make_settings(tmp_path, config)
    plugins = load_plugins(settings.handlers, settings.plugin_sections, {"PATH": "/usr/bin"})
    return effective_configs([parse_repo_file(text.encode())], server_ceiling(plugins))


def refused(text: str, tmp_path: Path, config: str = SERVER_CONFIG) -> RepoConfigError:
    with pytest.raises(RepoConfigError) as caught:
        resolve(text, tmp_path, config)
    return caught.value


# --- narrowing, and widening refused -------------------------------------------------------------------------


def test_a_repository_narrows_and_personalises_each_plugin(tmp_path: Path) -> None:
    configs = resolve(
        """
greeter:
  issue_comment: "Welcome, @{author}!"
  skip_authors: [dependabot*]
exec:
  hooks: [notify]
lambda_deploy:
  rules: [docs]
""",
        tmp_path=tmp_path,
    )
    assert configs["greeter"].issue_comment == "Welcome, @{author}!"
    assert configs["greeter"].skip_authors == ("renovate*", "dependabot*")  # added to the server's, never replacing
    assert [hook.name for hook in configs["exec"].hooks] == ["notify"]
    assert [rule.name for rule in configs["lambda_deploy"].push] == ["docs"]
    assert configs["audit"].destination is not None  # untouched: the server's own object


def test_the_readme_example_is_valid(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    example = readme.split("```yaml\n# .github/hookbot.yml\n", 1)[1].split("```", 1)[0]
    configs = resolve(example, tmp_path)
    assert configs["greeter"].pull_request_comment == ""  # no greeting on pull requests
    assert [hook.name for hook in configs["exec"].hooks] == ["lint"]
    assert [rule.name for rule in configs["lambda_deploy"].push] == ["app"]


def test_enabled_false_switches_a_plugin_off_for_the_repository(tmp_path: Path) -> None:
    configs = resolve("greeter:\n  enabled: false\nlambda_deploy:\n  enabled: false\n", tmp_path=tmp_path)
    assert configs["greeter"] is OFF and configs["lambda_deploy"] is OFF


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("greeter:\n  enabled: true\n", 2, "greeter is off on this server"),
        ("exec:\n  hooks: [deploy-prod]\n", 2, "exec is off on this server"),
    ],
)
def test_a_plugin_off_on_the_server_cannot_be_switched_on(tmp_path: Path, text: str, line: int, words: str) -> None:
    error = refused(text, tmp_path, '[hookbot]\nhandlers = ["audit"]\n[audit]\ndestination = "file:///tmp/x/"\n')
    assert error.line == line and words in str(error)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        # a setting the server does not let a repository set
        ("\nlambda_deploy:\n  function: evil-fn\n", 3, "lambda_deploy.function is not a setting a repository may set"),
        ("exec:\n  hooks: [lint]\n  command: [sh]\n", 3, "exec.command is not a setting a repository may set"),
        ("audit:\n  destination: s3://mine/\n", 2, "audit takes no repository settings"),
        # names the server does not define
        (
            "exec:\n  hooks:\n    - lint\n    - rm-rf\n",
            2,
            "the server defines no hook named rm-rf; it defines: lint, notify",
        ),
        ("lambda_deploy:\n  rules: [prod]\n", 2, "no push rule named prod; named push rules: app, docs"),
        # typos and types
        ("greeter:\n  enable: false\n", 2, "did you mean 'enabled'?"),
        ("greter:\n  enabled: false\n", 1, "unknown section 'greter' (did you mean 'greeter'?)"),
        ("greeter:\n  enabled: maybe\n", 2, "greeter.enabled must be true or false, not 'maybe'"),
        ("greeter:\n  skip_authors: dependabot\n", 2, "greeter.skip_authors must be a list of names"),
        # the same checks as the server's own [greeter]
        ("greeter:\n  issue_comment: 'Hi {autor}'\n", 2, "uses {autor}; a greeting may use {author}"),
        ("greeter:\n  issue_comment: '{author:>99999999}'\n", 2, "uses {author:>99999999}"),
        ("greeter:\n  issue_comment: '{author.__class__}'\n", 2, "uses {author.__class__}"),
    ],
)
def test_widening_and_mistakes_are_refused_naming_the_key_and_line(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    error = refused(text, tmp_path)
    assert (error.line, words in str(error)) == (line, True), str(error)
    assert str(error).startswith(f".github/hookbot.yml line {line}: ")


def test_the_server_config_takes_the_same_checks(tmp_path: Path) -> None:
    from bot.config_schema import ConfigError

    with pytest.raises(ConfigError, match=r"uses \{autor\}"):
        load_plugins(["greeter"], {"greeter": {"issue_comment": "Hi {autor}"}})


# --- hookbot config check --repo-file, for a repository's own CI --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code", "expected"),
    [
        (
            "_extends: shared\ngreeter:\n  skip_authors: [dependabot*]\nexec:\n  hooks: [lint]\n",
            0,
            ".github/hookbot.yml: ok; greeter: narrowed; exec: narrowed (_extends: shared is not followed offline)",
        ),
        ("greeter:\n  enabled: false\n", 0, ".github/hookbot.yml: ok; greeter: off"),
        (
            "# hookbot\ngreeter:\n  enabled: nope\n",
            1,
            "hookbot: .github/hookbot.yml line 3: greeter.enabled must be true or false, not 'nope'",
        ),
        (
            "lambda_deploy:\n  rules: [app]\n",
            1,
            "hookbot: .github/hookbot.yml line 2: lambda_deploy is off on this server; a repository can narrow a "
            "plugin's settings, not switch a plugin on",
        ),
    ],
)
def test_config_check_validates_a_repository_file_offline(
    bare_env: Path, capsys: pytest.CaptureFixture[str], text: str, code: int, expected: str
) -> None:
    (bare_env / "hookbot.toml").write_text(
        '[hookbot]\nhandlers = ["greeter", "exec"]\n'
        '[[exec.hooks]]\nname = "lint"\nevents = ["push"]\ncommand = ["true"]\n'
    )
    (bare_env / ".github").mkdir()
    (bare_env / ".github/hookbot.yml").write_text(text)
    assert main(["config", "check", "--repo-file", ".github/hookbot.yml", "--config", "hookbot.toml"]) == code
    captured = capsys.readouterr()
    assert (captured.out.splitlines()[-1] if code == 0 else captured.err.strip()) == expected


# --- reading YAML safely -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a: !!python/object/apply:os.system ['true']\n", "python/object/apply:os.system"),
        ("a: !!binary aGk=\n", "binary"),
        ("a: 2024-01-01\n", "timestamp; only text"),
        ("a: &x [1]\nb: *y\n", "the alias *y names no anchor"),
        ("a: 1\na: 2\n", "a is set twice"),
        ("a: [1, 2\n", "not valid YAML"),
        ("[" * 40 + "]" * 40, "nests deeper than 16 levels"),
        ("a: 1\n---\nb: 2\n", "more than one YAML document"),
    ],
)
def test_only_plain_data_is_read(text: str, words: str) -> None:
    with pytest.raises(RepoConfigError, match=None) as caught:
        parse_repo_file(text.encode())
    assert words in str(caught.value)


ALIAS_BOMB = b"""
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def peak_bytes_while_refusing(text: bytes) -> tuple[int, RepoConfigError]:
    tracemalloc.start()
    try:
        with pytest.raises(RepoConfigError) as caught:
            parse_repo_file(text)
        return tracemalloc.get_traced_memory()[1], caught.value
    finally:
        tracemalloc.stop()


def test_an_alias_bomb_is_refused_without_memory_growth() -> None:
    peak, error = peak_bytes_while_refusing(ALIAS_BOMB)  # a billion "lol"s if expanded
    assert "aliases count each time they repeat" in str(error) and error.line == 5
    assert peak < 2 * 1024 * 1024, peak


def test_a_1_mib_file_is_refused_before_parsing() -> None:
    text = b"greeter:\n  issue_comment: '" + b"x" * (1024 * 1024) + b"'\n"
    peak, error = peak_bytes_while_refusing(text)
    assert "hookbot reads at most 65536" in str(error)
    assert peak < 64 * 1024, peak  # nothing was decoded or parsed


# --- fetched, cached and reported through the fake GitHub ------------------------------------------------------


GREETER_ONLY = '[hookbot]\nhandlers = ["greeter"]\n'


@pytest.fixture
async def runtime(tmp_path: Path, fake_github: tuple[FakeGitHub, str]) -> Runtime:
    _, url = fake_github
    settings = make_settings(tmp_path, GREETER_ONLY, GITHUB_TOKEN="t", GITHUB_API_URL=url, HOOKBOT_DRY_RUN="0")
    return Runtime.build(settings, secrets_=[])


def issue_opened(login: str = "Codertocat", number: int = 1) -> Delivery:
    """An issue opened by ``login``; each number is its own issue (the greeter greets an issue once)."""
    payload = json.loads(fixture_bytes("github/issues.opened.json"))
    payload["issue"]["user"]["login"] = payload["sender"]["login"] = login
    payload["issue"]["number"] = number
    return Delivery("issues", str(uuid.uuid4()), payload, b"", "github-http")


def push(touching: list[str], *, repository: str = REPO, ref: str = "refs/heads/master") -> Delivery:
    payload = json.loads(fixture_bytes("github/push.json"))
    payload["ref"] = ref
    payload["after"] = uuid.uuid4().hex + "00000000"
    payload["commits"][0]["modified"] = touching
    payload["repository"]["full_name"] = repository
    return Delivery("push", str(uuid.uuid4()), payload, b"", "github-http")


def greetings(fake: FakeGitHub) -> list[str]:
    return [body.removesuffix(f"\n\n{MARKER}") for _, body in fake.posted_comments()]


def contents_requests(fake: FakeGitHub) -> list[str]:
    return [r.path for r in fake.calls("GET", "/repos/") if "/contents/" in r.path]


async def test_the_repository_file_personalises_the_greeting(
    runtime: Runtime, fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, _ = fake_github
    fake.files[REPO] = {".github/hookbot.yml": b"greeter:\n  issue_comment: 'Welcome to {repository}, @{author}!'\n"}
    result = await runtime.dispatcher.dispatch(issue_opened())
    await runtime.close()
    assert result.ok
    assert greetings(fake) == ["Welcome to Codertocat/Hello-World, @Codertocat!"]
    assert contents_requests(fake) == [CONTENTS]  # the org's file is not asked for when the repository has one


async def test_without_a_file_the_org_dot_github_file_applies(
    runtime: Runtime, fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, _ = fake_github
    fake.files["Codertocat/.github"] = {".github/hookbot.yml": b"greeter:\n  skip_authors: [codertocat]\n"}
    result = await runtime.dispatcher.dispatch(issue_opened())
    await runtime.close()
    assert result.ok and greetings(fake) == []  # skipped, case-insensitively
    assert contents_requests(fake) == [CONTENTS, ORG_CONTENTS]


async def test_extends_starts_from_another_repositorys_file(
    runtime: Runtime, fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, _ = fake_github
    fake.files["Codertocat/shared-config"] = {
        ".github/hookbot.yml": b"greeter:\n  issue_comment: 'Base greeting, @{author}'\n  skip_authors: [bots-*]\n"
    }
    fake.files[REPO] = {".github/hookbot.yml": b"_extends: shared-config\ngreeter:\n  skip_authors: [someone]\n"}
    await runtime.dispatcher.dispatch(issue_opened())
    await runtime.dispatcher.dispatch(issue_opened("someone", 2))
    await runtime.dispatcher.dispatch(issue_opened("bots-1", 3))
    await runtime.close()
    # The base's greeting; the repository's skip_authors replaced the base's, as a key does under _extends.
    assert greetings(fake) == ["Base greeting, @Codertocat", "Base greeting, @bots-1"]


@pytest.mark.parametrize(
    ("files", "why"),
    [
        (
            {REPO: b"_extends: a\n", "Codertocat/a": b"_extends: Hello-World\n"},
            "Codertocat/a:.github/hookbot.yml line 1: _extends is followed one level only, and this file is already "
            "the base of Codertocat/Hello-World",
        ),
        ({REPO: b"_extends: Hello-World\n"}, "line 1: _extends: 'Hello-World' names this same repository"),
        ({REPO: b"_extends: ../../user\n"}, "line 1: _extends: '../../user' is not a repository name"),
        ({REPO: b"_extends: missing\n"}, "line 1: _extends: Codertocat/missing has no readable .github/hookbot.yml"),
    ],
    ids=["two-levels-and-cycles", "itself", "path-tricks", "missing"],
)
async def test_extends_goes_one_level_and_a_bad_one_is_refused(
    runtime: Runtime,
    fake_github: tuple[FakeGitHub, str],
    caplog: pytest.LogCaptureFixture,
    files: dict[str, bytes],
    why: str,
) -> None:
    fake, _ = fake_github
    for repository, text in files.items():
        fake.files[repository] = {".github/hookbot.yml": text}
    with caplog.at_level(logging.WARNING, logger="hookbot.dispatch"):
        result = await runtime.dispatcher.dispatch(issue_opened())
    await runtime.close()
    assert result.ok and greetings(fake) == [SERVER_GREETING]
    assert why in caplog.text
    assert all("/../" not in path for path in contents_requests(fake))


async def test_no_file_anywhere_means_the_servers_config(runtime: Runtime, fake_github: tuple[FakeGitHub, str]) -> None:
    fake, _ = fake_github
    result = await runtime.dispatcher.dispatch(issue_opened())
    await runtime.close()
    assert result.ok and greetings(fake) == [SERVER_GREETING]


async def test_an_empty_greeting_means_none_of_that_kind(runtime: Runtime, fake_github: tuple[FakeGitHub, str]) -> None:
    fake, _ = fake_github
    fake.files[REPO] = {".github/hookbot.yml": b"greeter:\n  issue_comment: ''\n"}
    result = await runtime.dispatcher.dispatch(issue_opened())
    await runtime.close()
    assert result.ok and greetings(fake) == []


async def test_a_repository_switches_the_greeter_off(runtime: Runtime, fake_github: tuple[FakeGitHub, str]) -> None:
    fake, _ = fake_github
    fake.files[REPO] = {".github/hookbot.yml": b"greeter:\n  enabled: false\n"}
    result = await runtime.dispatcher.dispatch(issue_opened())
    await runtime.close()
    assert result.ok and greetings(fake) == []
    assert [(outcome.handler, outcome.status) for outcome in result.outcomes] == [("greeter", "skipped")]


async def test_a_widening_file_is_ignored_and_each_delivery_logs_one_line(
    runtime: Runtime, fake_github: tuple[FakeGitHub, str], caplog: pytest.LogCaptureFixture
) -> None:
    fake, _ = fake_github
    fake.files[REPO] = {".github/hookbot.yml": b"greeter:\n  enabled: false\nexec:\n  hooks: [anything]\n"}
    with caplog.at_level(logging.WARNING, logger="hookbot.dispatch"):
        await runtime.dispatcher.dispatch(issue_opened())
        await runtime.dispatcher.dispatch(issue_opened("other", 2))
    await runtime.close()
    assert len(greetings(fake)) == 2  # the server's config applied, greeter and all
    lines = [r.getMessage() for r in caplog.records if "repository config ignored" in r.getMessage()]
    why = "exec is off on this server; a repository can narrow a plugin's settings, not switch a plugin on"
    expected = f"repository config ignored, the server's config applies: {REPO}:.github/hookbot.yml line 4: {why}"
    assert lines == [expected, expected]


async def test_100_deliveries_make_one_contents_request_and_a_push_touching_the_file_drops_it(
    runtime: Runtime, fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, _ = fake_github
    fake.files[REPO] = {".github/hookbot.yml": b"greeter:\n  issue_comment: 'One, @{author}'\n"}
    await asyncio.gather(*(runtime.dispatcher.dispatch(issue_opened(f"user-{n}", n)) for n in range(50)))
    for n in range(50, 100):
        await runtime.dispatcher.dispatch(issue_opened(f"user-{n}", n))
    assert contents_requests(fake) == [CONTENTS]

    await runtime.dispatcher.dispatch(push(["README.md"]))  # touches something else: the cache stays
    assert contents_requests(fake) == [CONTENTS]

    fake.files[REPO] = {".github/hookbot.yml": b"greeter:\n  issue_comment: 'Two, @{author}'\n"}
    await runtime.dispatcher.dispatch(push([".github/hookbot.yml"]))
    await runtime.dispatcher.dispatch(issue_opened("after-the-push", 100))
    await runtime.close()
    assert contents_requests(fake) == [CONTENTS, CONTENTS]
    assert greetings(fake)[-1] == "Two, @after-the-push"


async def test_after_a_minute_the_file_is_revalidated_with_its_etag_and_a_304_costs_no_quota(
    runtime: Runtime, fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, _ = fake_github
    fake.files[REPO] = {".github/hookbot.yml": b"greeter:\n  issue_comment: 'Hi @{author}'\n"}
    repo_configs = runtime.dispatcher.repo_configs
    assert repo_configs is not None
    now = [1000.0]
    repo_configs.clock = lambda: now[0]
    await runtime.dispatcher.dispatch(issue_opened("a"))
    now[0] += 61
    quota = fake.rate_remaining
    await runtime.dispatcher.dispatch(issue_opened("b", 2))
    await runtime.close()
    first, second = [r for r in fake.requests if r.path == CONTENTS]
    assert "If-None-Match" not in first.headers and second.headers["If-None-Match"].startswith('W/"')
    assert fake.rate_remaining == quota - 2  # b's comment search and comment; the 304 was free
    assert greetings(fake) == ["Hi @a", "Hi @b"]


async def test_an_org_file_push_drops_the_org_entry(runtime: Runtime, fake_github: tuple[FakeGitHub, str]) -> None:
    fake, _ = fake_github
    fake.files["Codertocat/.github"] = {".github/hookbot.yml": b"greeter:\n  issue_comment: 'Org, @{author}'\n"}
    await runtime.dispatcher.dispatch(issue_opened("a"))
    fake.files["Codertocat/.github"] = {".github/hookbot.yml": b"greeter:\n  issue_comment: 'Org 2, @{author}'\n"}
    await runtime.dispatcher.dispatch(push([".github/hookbot.yml"], repository="Codertocat/.github"))
    await runtime.dispatcher.dispatch(issue_opened("b", 2))
    await runtime.close()
    assert greetings(fake) == ["Org, @a", "Org 2, @b"]


async def test_a_bad_file_gets_a_failing_check_run_and_the_fix_a_successful_one(
    runtime: Runtime, fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, _ = fake_github
    fake.files[REPO] = {".github/hookbot.yml": b"# hookbot\ngreeter:\n  enabled: nope\n"}
    bad_push = push([".github/hookbot.yml"])
    result = await runtime.dispatcher.dispatch(bad_push)
    assert result.ok
    [run] = fake.check_runs
    assert (run["repository"], run["name"], run["head_sha"]) == (REPO, "hookbot config", bad_push.payload["after"])
    assert (run["status"], run["conclusion"]) == ("completed", "failure")
    assert run["output"]["summary"] == (
        "Codertocat/Hello-World:.github/hookbot.yml line 3: greeter.enabled must be true or false, not 'nope'"
    )
    [annotation] = run["output"]["annotations"]
    assert (annotation["path"], annotation["start_line"], annotation["annotation_level"]) == (
        ".github/hookbot.yml",
        3,
        "failure",
    )

    await runtime.dispatcher.dispatch(issue_opened())  # meanwhile, the server's config applies
    assert greetings(fake) == [SERVER_GREETING]

    fake.files[REPO] = {".github/hookbot.yml": b"# hookbot\ngreeter:\n  enabled: false\n"}
    fixing_push = push([".github/hookbot.yml"])
    await runtime.dispatcher.dispatch(fixing_push)
    await runtime.close()
    assert [(run["head_sha"], run["conclusion"], run["output"]["summary"]) for run in fake.check_runs[1:]] == [
        (fixing_push.payload["after"], "success", f"{REPO}:.github/hookbot.yml: greeter: off")
    ]


async def test_a_push_to_another_branch_is_checked_at_its_own_commit(
    runtime: Runtime, fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, _ = fake_github
    fake.files[REPO] = {".github/hookbot.yml": b"greeter:\n  issue_comment: 'Main, @{author}'\n"}
    await runtime.dispatcher.dispatch(issue_opened("a"))
    branch_push = push([".github/hookbot.yml"], ref="refs/heads/feature")
    fake.commits[f"{REPO}@{branch_push.payload['after']}"] = {".github/hookbot.yml": b"greeter:\n  skip: [x]\n"}
    await runtime.dispatcher.dispatch(branch_push)
    await runtime.dispatcher.dispatch(issue_opened("b", 2))
    await runtime.close()
    [run] = fake.check_runs
    assert (run["head_sha"], run["conclusion"]) == (branch_push.payload["after"], "failure")
    assert "line 2: greeter.skip is not a setting a repository may set" in run["output"]["summary"]
    assert greetings(fake) == ["Main, @a", "Main, @b"]  # the default branch's file still applies, from the cache
    assert contents_requests(fake) == [CONTENTS, CONTENTS]  # the second one at the pushed commit
    assert [r.query for r in fake.calls("GET", CONTENTS)] == [{}, {"ref": branch_push.payload["after"]}]


async def test_a_token_that_cannot_create_check_runs_sets_a_commit_status(
    runtime: Runtime, fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, _ = fake_github
    fake.check_runs_forbidden = True
    fake.files[REPO] = {".github/hookbot.yml": b"greeter:\n  skip_authors: 7\n"}
    bad_push = push([".github/hookbot.yml"])
    result = await runtime.dispatcher.dispatch(bad_push)
    await runtime.close()
    assert result.ok and fake.check_runs == []
    [status] = fake.statuses
    assert (status["sha"], status["context"], status["state"]) == (
        bad_push.payload["after"],
        "hookbot config",
        "failure",
    )
    assert status["description"].startswith("Codertocat/Hello-World:.github/hookbot.yml line 2: greeter.skip_authors")
    assert len(status["description"]) <= 140


async def test_a_1_mib_file_is_refused_by_its_size_before_decoding(
    runtime: Runtime, fake_github: tuple[FakeGitHub, str], caplog: pytest.LogCaptureFixture
) -> None:
    fake, _ = fake_github
    fake.files[REPO] = {".github/hookbot.yml": b"#" * (1024 * 1024)}
    with caplog.at_level(logging.WARNING, logger="hookbot.dispatch"):
        result = await runtime.dispatcher.dispatch(issue_opened())
    await runtime.close()
    assert result.ok and greetings(fake) == [SERVER_GREETING]
    assert "the file is 1048576 bytes; hookbot reads at most 65536" in caplog.text


async def test_in_lambda_the_cache_lives_as_long_as_the_warm_container(
    tmp_path: Path, fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, url = fake_github
    fake.files[REPO] = {".github/hookbot.yml": b"greeter:\n  issue_comment: 'Warm, @{author}'\n"}
    settings = make_settings(tmp_path, GREETER_ONLY, GITHUB_TOKEN="t", GITHUB_API_URL=url, HOOKBOT_DRY_RUN="0")
    entry = LambdaEntry(Runtime.build(settings))
    for number in (1, 2, 3):
        body = json.dumps(issue_opened(number=number).payload).encode()
        event = function_url_event(body, github_headers(body, "issues"))
        # Each invocation as Lambda makes it: its own thread and its own asyncio.run loop, the same Runtime.
        answer = await asyncio.to_thread(entry, event, None)
        assert answer["statusCode"] == 200, answer
    assert greetings(fake) == ["Warm, @Codertocat"] * 3
    assert contents_requests(fake) == [CONTENTS]

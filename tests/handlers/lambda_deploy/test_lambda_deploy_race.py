"""Issue 12: two replicas deploying one function at the same moment; the newer push wins, the older ends inactive.

Two Runtimes (each what one hookbot process builds: its own plugins, DeployQueue and boto3 clients), and then two
real `hookbot serve` processes, deploy to the same function on moto. moto 5.x keeps no RevisionId for functions
and ignores the RevisionId parameter of UpdateFunctionCode, UpdateFunctionConfiguration, PublishVersion and
UpdateAlias (its own docstring says so for UpdateAlias), so :class:`RevisionProxy`, a real HTTP server in front
of moto, adds what Lambda does: it answers a RevisionId for the function and its aliases, changes it on each
update, and refuses a call whose RevisionId is stale with 412 PreconditionFailedException. It can also hold one
request until the test lets it go, which makes the race deterministic: one replica is stopped mid-deployment
while the other runs through.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.dispatch import DispatchResult
from bot.runtime import Runtime
from tests.fake_github import FakeGitHub
from tests.helpers import (
    CONFIG,
    PUSHED_AT,
    REPO,
    SHA_A,
    SHA_B,
    Aws,
    code_sha256,
    github_delivery,
    github_headers,
    make_settings,
    push_payload,
)
from tests.processes import Server

FUNCTION = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)(?P<rest>/.*)?$")


@dataclass
class Hold:
    """The first request matching ``method`` and ``rest`` (the path after the function) waits for ``release``."""

    method: str
    rest: str
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class RevisionProxy:
    upstream: str
    functions: dict[str, str] = field(default_factory=dict)  # function name -> its current RevisionId
    aliases: dict[tuple[str, str], str] = field(default_factory=dict)
    holds: list[Hold] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # "METHOD rest" of every call refused as stale
    session: aiohttp.ClientSession | None = None

    def hold(self, method: str, rest: str) -> Hold:
        made = Hold(method, rest)
        self.holds.append(made)
        return made

    def _revision(self, key: Any, table: dict[Any, str]) -> str:
        return table.setdefault(key, str(uuid.uuid4()))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        route = FUNCTION.match(request.path)
        name, rest = (route["name"], route["rest"] or "") if route else ("", "")
        for hold in self.holds:
            if hold.method == request.method and hold.rest == rest and route:
                self.holds.remove(hold)
                hold.arrived.set()
                await hold.release.wait()
                break
        alias = rest.removeprefix("/aliases/") if rest.startswith("/aliases/") else None
        key: Any  # a function name, or (function name, alias name) for an alias
        key, table = ((name, alias), self.aliases) if alias else (name, self.functions)
        guarded = request.method in ("PUT", "POST") and (rest in ("/code", "/configuration", "/versions") or alias)
        if guarded and body:
            sent = orjson.loads(body).get("RevisionId")
            if sent is not None and sent != self._revision(key, table):
                self.refused.append(f"{request.method} {rest}")
                message = "The Revision Id provided does not match the latest Revision Id."
                return web.json_response(
                    {"Type": "User", "message": message},
                    status=412,
                    headers={"x-amzn-ErrorType": "PreconditionFailedException"},
                )
        assert self.session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self.session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as answer:
            status, payload = answer.status, await answer.read()
            answer_headers = {k: v for k, v in answer.headers.items() if k.lower().startswith("x-amz")}
        if status < 300 and route and request.method in ("PUT", "POST"):
            if rest in ("/code", "/configuration") or alias:
                table[key] = str(uuid.uuid4())  # every update moves the revision
            elif request.method == "POST" and rest == "/aliases":
                self.aliases[(name, orjson.loads(body)["Name"])] = str(uuid.uuid4())
        if status < 300 and route and payload and "Qualifier" not in request.query:
            document = orjson.loads(payload)
            if isinstance(document, dict):
                if "Configuration" in document:
                    document["Configuration"]["RevisionId"] = self._revision(name, self.functions)
                elif alias or rest == "/aliases":
                    alias_name = alias or document.get("Name")
                    document["RevisionId"] = self._revision((name, alias_name), self.aliases)
                elif rest in ("/code", "/configuration", ""):
                    document["RevisionId"] = self._revision(name, self.functions)
                payload = orjson.dumps(document)
        return web.Response(body=payload, status=status, headers=answer_headers, content_type="application/json")


@pytest.fixture
def aws(moto: str) -> Aws:
    """The test's own clients, made before the proxy is set up: they talk to moto directly (a blocking call
    through the proxy, which runs on the test's event loop, would wait for itself)."""
    made = Aws()
    made.create_function()
    return made


@pytest.fixture
async def proxy(
    moto: str, aws: Aws, aiohttp_server: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RevisionProxy]:
    made = RevisionProxy(moto, session=aiohttp.ClientSession())
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", made.handle)
    server: TestServer = await aiohttp_server(app)
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", str(server.make_url("")).rstrip("/"))
    yield made
    for hold in made.holds:
        hold.release.set()
    assert made.session is not None
    await made.session.close()


@pytest.fixture
async def replicas(tmp_path: Path, fake_github: tuple[FakeGitHub, str]) -> AsyncIterator[tuple[Runtime, Runtime]]:
    """Two hookbot replicas over one config, one GitHub and one AWS account, each with its own state."""
    made = []
    for name in ("replica-1", "replica-2"):
        (tmp_path / name).mkdir()
        env = {"GITHUB_TOKEN": "ghp_test", "GITHUB_API_URL": fake_github[1]}
        made.append(Runtime.build(make_settings(tmp_path / name, CONFIG, **env)))
    yield made[0], made[1]
    for runtime in made:
        await runtime.close()


def by_sha(fake: FakeGitHub) -> dict[str, list[str]]:
    return {d["ref"]: [s["state"] for s in d["statuses"]] for d in fake.deployments.values()}


async def push(runtime: Runtime, sha: str, offset: int) -> DispatchResult:
    return await runtime.dispatcher.dispatch(github_delivery("push", push_payload(sha, pushed_at=PUSHED_AT + offset)))


async def test_the_older_push_stopped_mid_deployment_ends_inactive_and_the_newer_stays(
    proxy: RevisionProxy, aws: Aws, replicas: tuple[Runtime, Runtime], fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, _ = fake_github
    bodies = {sha: aws.artifact(sha) for sha in (SHA_A, SHA_B)}
    first, second = replicas
    # The older push's replica has updated the code and is about to stamp the Description when it stalls.
    stalled = proxy.hold("PUT", "/configuration")
    older = asyncio.ensure_future(push(first, SHA_A, 0))
    await asyncio.wait_for(stalled.arrived.wait(), 60)
    newer = await push(second, SHA_B, 1)  # the newer push, on the other replica, runs through meanwhile
    assert newer.ok, newer.outcomes
    stalled.release.set()
    assert (await older).ok

    assert proxy.refused == ["PUT /configuration"]  # the stale revision stopped the older replica
    assert aws.config()["CodeSha256"] == code_sha256(bodies[SHA_B])
    assert aws.config()["Description"] == f"deployed {SHA_B} from {REPO}@master"
    assert aws.version_description(aws.alias_version()) == f"deployed {SHA_B} from {REPO}@master"
    tags = aws.lam.list_tags(Resource=aws.config()["FunctionArn"])["Tags"]
    assert tags["hookbot:source"] == f"{REPO}@{SHA_B}"
    assert by_sha(fake) == {SHA_A: ["in_progress", "inactive"], SHA_B: ["in_progress", "success"]}


async def test_an_older_push_arriving_while_the_newer_deploys_ends_inactive_at_once(
    proxy: RevisionProxy, aws: Aws, replicas: tuple[Runtime, Runtime], fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, _ = fake_github
    bodies = {sha: aws.artifact(sha) for sha in (SHA_A, SHA_B)}
    first, second = replicas
    # The newer push's replica has recorded its order and stalls before updating the code.
    stalled = proxy.hold("PUT", "/code")
    newer = asyncio.ensure_future(push(second, SHA_B, 1))
    await asyncio.wait_for(stalled.arrived.wait(), 60)
    older = await push(first, SHA_A, 0)
    assert older.ok, older.outcomes
    stalled.release.set()
    assert (await newer).ok

    assert aws.config()["CodeSha256"] == code_sha256(bodies[SHA_B])
    assert aws.version_description(aws.alias_version()) == f"deployed {SHA_B} from {REPO}@master"
    assert by_sha(fake) == {SHA_A: ["in_progress", "inactive"], SHA_B: ["in_progress", "success"]}
    versions = aws.lam.list_versions_by_function(FunctionName="app-fn")["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1"]  # the older one published nothing


async def test_two_hookbot_processes_racing_the_newer_push_wins(
    proxy: RevisionProxy,
    aws: Aws,
    tmp_path: Path,
    fake_github: tuple[FakeGitHub, str],
    servers: list[Server],
) -> None:
    """The first race again, between two `hookbot serve` processes receiving the pushes over HTTP."""
    fake, url = fake_github
    bodies = {sha: aws.artifact(sha) for sha in (SHA_A, SHA_B)}
    for name in ("replica-1", "replica-2"):
        (tmp_path / name).mkdir()
        servers.append(Server(tmp_path / name, url, CONFIG))
    await asyncio.gather(*(server.start() for server in servers))
    first, second = servers
    stalled = proxy.hold("PUT", "/configuration")
    assert await post_push(first, SHA_A, 0) == 202
    await asyncio.wait_for(stalled.arrived.wait(), 60)
    assert await post_push(second, SHA_B, 1) == 202
    await second.wait_idle(timeout=60)
    stalled.release.set()
    await first.wait_idle(timeout=60)

    assert proxy.refused == ["PUT /configuration"]
    assert aws.config()["CodeSha256"] == code_sha256(bodies[SHA_B])
    assert aws.version_description(aws.alias_version()) == f"deployed {SHA_B} from {REPO}@master"
    assert by_sha(fake) == {SHA_A: ["in_progress", "inactive"], SHA_B: ["in_progress", "success"]}


async def post_push(server: Server, sha: str, offset: int) -> int:
    body = orjson.dumps(push_payload(sha, pushed_at=PUSHED_AT + offset))
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{server.url}/webhook", data=body, headers=github_headers(body, "push")) as response,
    ):
        return response.status

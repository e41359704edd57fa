"""A fake GitHub REST API: a real aiohttp server on loopback that records every request it is asked.

It knows the few endpoints hookbot's built-ins use and answers anything else from ``responses`` (set by a
test) or with 404, so a test can assert exactly what the bot asked GitHub to do. ``faults`` script failures
(a status with headers, or doing the work and then dropping the connection before answering), and
``hook_deliveries`` serves the webhook delivery log that `hookbot redeliver` reads. ``files`` are served by the
contents API with ETags and 304s as GitHub does (a 304 does not count against the rate limit), and check runs and
commit statuses are recorded (``check_runs_forbidden`` answers as GitHub does to a personal access token).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import itertools
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_LOGIN = "hookbot-test[bot]"
REPO_ROUTE = re.compile(r"^/repos/(?P<repo>[^/]+/[^/]+)/(?P<rest>.+)$")


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    json: Any
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    """The next request matching ``method`` and ``path`` (a prefix) is answered ``status`` with ``headers``;
    with ``drop=True`` it is handled normally and then the connection is cut before the answer goes out."""

    method: str
    path: str
    status: int = 502
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    times: int = 1


@dataclass
class FakeGitHub:
    requests: list[Recorded] = field(default_factory=list)
    comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    responses: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    tokens_issued: int = 0
    # The n-th installation token GitHub issues (a test may switch to 2026's JWT-shaped ones).
    installation_token: Callable[[int], str] = lambda n: f"ghs_installation_{n}"
    # Deployments: id -> the created deployment, with the statuses set on it under "statuses".
    deployments: dict[int, dict[str, Any]] = field(default_factory=dict)
    # Repository permission per user login ("admin", "maintain", "write", "triage", "read"); others: "read".
    permissions: dict[str, str] = field(default_factory=dict)
    # Commit contents per "owner/repo@sha": path -> bytes, served by the zipball and commits endpoints.
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    # The commits on each branch, oldest first, per "owner/repo@branch": what the compare API answers from.
    branches: dict[str, list[str]] = field(default_factory=dict)
    delay: float = 0.0
    post_delay: float = 0.0  # added to POSTs only: a comment lands this long after GitHub received the request
    faults: list[Fault] = field(default_factory=list)
    # "/repos/o/r/hooks/1" or "/app/hook" -> delivery attempts, newest first (as GitHub lists them)
    hook_deliveries: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    redelivered: list[tuple[str, int]] = field(default_factory=list)
    page_size: int = 2  # small, so that pagination is exercised
    rate_remaining: int = 5000
    # Files on each repository's default branch: "owner/repo" -> {path: content}, served by the contents API.
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)
    check_runs: list[dict[str, Any]] = field(default_factory=list)  # each with its "repository"
    statuses: list[dict[str, Any]] = field(default_factory=list)  # each with its "repository" and "sha"
    check_runs_forbidden: bool = False
    # Called with each request as it arrives, before any work: a test can look at the bot's state at that moment.
    on_request: Callable[[Recorded], None] | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _in_flight: set[asyncio.Future[web.StreamResponse]] = field(default_factory=set)

    def calls(self, method: str, path_prefix: str = "/") -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    def landed_comments(self) -> dict[str, int]:
        """Comments per issue comments path that GitHub created (a POST counts once its answer is made)."""
        return {path: len(thread) for path, thread in self.comments.items() if thread}

    def posted_comments(self) -> list[tuple[str, str]]:
        """(issue comments path, body) for every comment created."""
        return [(r.path, r.json["body"]) for r in self.calls("POST") if r.path.endswith("/comments")]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        data = await request.json() if body else None
        recorded = Recorded(request.method, request.path, dict(request.headers), data, dict(request.query))
        self.requests.append(recorded)
        if self.on_request is not None:
            self.on_request(recorded)
        # GitHub finishes a request it has received even when the client hangs up (or is killed) meanwhile; the
        # test server would cancel the handler, so the work runs shielded.
        work = asyncio.ensure_future(self._work(request, data))
        self._in_flight.add(work)
        work.add_done_callback(self._in_flight.discard)
        return await asyncio.shield(work)

    async def _work(self, request: web.Request, data: Any) -> web.StreamResponse:
        if self.delay or (self.post_delay and request.method == "POST"):
            await asyncio.sleep(self.delay + (self.post_delay if request.method == "POST" else 0.0))
        fault = self._take_fault(request)
        if fault is not None and not fault.drop:
            message = {"message": f"fake fault {fault.status}"}
            return web.json_response(message, status=fault.status, headers=fault.headers)
        response = self._answer(request, data)
        if response.status != 304:  # GitHub: a conditional request answered 304 is not counted
            self.rate_remaining -= 1
        response.headers.update(
            {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": str(self.rate_remaining), "X-RateLimit-Reset": "0"}
        )
        if fault is not None:
            assert request.transport is not None
            request.transport.abort()  # the work is done, but the answer never reaches the client
        return response

    def _take_fault(self, request: web.Request) -> Fault | None:
        for fault in self.faults:
            if fault.method == request.method and request.path.startswith(fault.path):
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def _deliveries(self, request: web.Request) -> web.StreamResponse | None:
        for base, attempts in self.hook_deliveries.items():
            if request.method == "GET" and request.path == f"{base}/deliveries":
                start = int(request.query.get("cursor", "0"))
                size = min(int(request.query.get("per_page", "30")), self.page_size)
                headers = {}
                if start + size < len(attempts):
                    query = f"per_page={request.query.get('per_page', '30')}&cursor={start + size}"
                    headers["Link"] = f'<{request.url.with_query(query)}>; rel="next"'
                return web.json_response(attempts[start : start + size], headers=headers)
            prefix = f"{base}/deliveries/"
            if request.method == "POST" and request.path.startswith(prefix) and request.path.endswith("/attempts"):
                self.redelivered.append((base, int(request.path[len(prefix) :].split("/")[0])))
                return web.json_response({}, status=202)
        return None

    def _answer(self, request: web.Request, data: Any) -> web.StreamResponse:
        deliveries = self._deliveries(request)
        if deliveries is not None:
            return deliveries
        canned = self.responses.get((request.method, request.path))
        if canned is not None:
            status, payload = canned
            return web.json_response(payload, status=status)
        if request.path == "/user":
            return web.json_response({"login": BOT_LOGIN, "type": "Bot"})
        if request.method == "POST" and request.path.startswith("/app/installations/"):
            self.tokens_issued += 1
            return web.json_response(
                {"token": self.installation_token(self.tokens_issued), "expires_at": "2099-01-01T00:00:00Z"},
                status=201,
            )
        repo_route = REPO_ROUTE.match(request.path)
        if repo_route is not None:
            answer = self._repository_endpoint(
                request.method,
                repo_route["repo"],
                repo_route["rest"],
                data,
                request.headers.get("If-None-Match"),
                request.query.get("ref"),
            )
            if answer is not None:
                return answer
        if request.path.endswith("/comments") and "/issues/" in request.path:
            thread = self.comments.setdefault(request.path, [])
            if request.method == "GET":
                return web.json_response(thread)
            if request.method == "POST":
                comment = {"id": next(self._ids), "body": data["body"], "user": {"login": BOT_LOGIN}}
                thread.append(comment)
                return web.json_response(comment, status=201)
        return web.json_response({"message": "Not Found"}, status=404)

    def _repository_endpoint(
        self,
        method: str,
        repo: str,
        rest: str,
        data: Any,
        request_etag: str | None = None,
        ref: str | None = None,
    ) -> web.StreamResponse | None:
        """Deployments, collaborator permission, commits, zipballs, contents, check runs and statuses of ``repo``
        (None: not one of these)."""
        parts = rest.split("/")
        if method == "POST" and parts == ["deployments"]:
            deployment = {"id": next(self._ids), "statuses": [], **data}
            self.deployments[deployment["id"]] = deployment
            return web.json_response({k: v for k, v in deployment.items() if k != "statuses"}, status=201)
        if method == "POST" and len(parts) == 3 and parts[0] == "deployments" and parts[2] == "statuses":
            found = self.deployments.get(int(parts[1]))
            if found is None:
                return web.json_response({"message": "Not Found"}, status=404)
            found["statuses"].append(data)
            return web.json_response({"id": next(self._ids), **data}, status=201)
        if method == "GET" and parts[0] == "contents":
            return self._contents(repo, "/".join(parts[1:]), request_etag, ref)
        if method == "POST" and parts == ["check-runs"]:
            if self.check_runs_forbidden:
                message = "Resource not accessible by personal access token"
                return web.json_response({"message": message}, status=403)
            self.check_runs.append({"repository": repo, **data})
            return web.json_response({"id": next(self._ids), **data}, status=201)
        if method == "POST" and len(parts) == 2 and parts[0] == "statuses":
            self.statuses.append({"repository": repo, "sha": parts[1], **data})
            return web.json_response({"id": next(self._ids), **data}, status=201)
        if method == "GET" and len(parts) == 3 and parts[0] == "collaborators" and parts[2] == "permission":
            role = self.permissions.get(parts[1], "read")
            legacy = {"maintain": "write", "triage": "read"}.get(role, role)
            return web.json_response({"permission": legacy, "role_name": role, "user": {"login": parts[1]}})
        if method == "GET" and len(parts) >= 2 and parts[0] == "compare":
            return self._compare(repo, "/".join(parts[1:]))
        if method == "GET" and len(parts) == 2 and parts[0] in ("commits", "zipball"):
            sha = self._find_commit(repo, parts[1])
            if sha is None:
                return web.json_response({"message": "No commit found for SHA"}, status=422)
            if parts[0] == "commits":
                return web.json_response({"sha": sha})
            # GitHub answers with a redirect to codeload; the client must follow it.
            raise web.HTTPFound(f"/_codeload/{repo}/legacy.zip/{sha}")
        return None

    def _contents(self, repo: str, path: str, request_etag: str | None, ref: str | None) -> web.StreamResponse:
        """A file as the contents API gives it (base64, its git blob sha), its ETag, and 304 when that matches;
        from the default branch's ``files``, or with ``?ref=`` from that commit's ``commits`` entry."""
        content = (self.commits.get(f"{repo}@{ref}", {}) if ref else self.files.get(repo, {})).get(path)
        if content is None:
            return web.json_response({"message": "Not Found"}, status=404)
        sha = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()  # noqa: S324 - git's blob id
        etag = f'W/"{sha}"'
        if request_etag == etag:
            return web.Response(status=304, headers={"ETag": etag})
        answer = {
            "type": "file",
            "path": path,
            "name": path.rsplit("/", 1)[-1],
            "size": len(content),
            "sha": sha,
            "encoding": "base64",
            "content": base64.encodebytes(content).decode(),
        }
        return web.json_response(answer, headers={"ETag": etag})

    def _compare(self, repo: str, basehead: str) -> web.StreamResponse:
        """``compare/{base}...{head}`` as GitHub answers it for a branch and a commit: ``identical`` when the
        commit is the branch's tip, ``behind`` when it is an older commit of the branch, ``diverged`` when the
        branch never had it; 404 for an unknown branch or commit (GitHub's answer for a fork's commit too)."""
        base, _, head = basehead.partition("...")
        history = self.branches.get(f"{repo}@{base}")
        if history is None or self._find_commit(repo, head) is None:
            return web.json_response({"message": "Not Found"}, status=404)
        if history and history[-1] == head:
            return web.json_response({"status": "identical", "ahead_by": 0, "behind_by": 0, "commits": []})
        if head in history:
            behind = len(history) - 1 - history.index(head)
            return web.json_response({"status": "behind", "ahead_by": 0, "behind_by": behind, "commits": []})
        return web.json_response({"status": "diverged", "ahead_by": 1, "behind_by": len(history), "commits": [head]})

    def _find_commit(self, repo: str, ref: str) -> str | None:
        for name in self.commits:
            found_repo, _, sha = name.partition("@")
            if found_repo == repo and sha.startswith(ref):
                return sha
        return None

    async def codeload(self, request: web.Request) -> web.StreamResponse:
        """A zipball as GitHub makes it: every file under one ``owner-repo-shortsha/`` folder."""
        repo, sha = f"{request.match_info['owner']}/{request.match_info['name']}", request.match_info["sha"]
        self.requests.append(Recorded(request.method, request.path, dict(request.headers), None))
        top = f"{repo.replace('/', '-')}-{sha[:7]}/"
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            archive.writestr(top, b"")
            for path, content in self.commits[f"{repo}@{sha}"].items():
                archive.writestr(top + path, content)
        return web.Response(body=out.getvalue(), content_type="application/zip")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/_codeload/{owner}/{name}/legacy.zip/{sha}", self.codeload)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

"""The GitHub side of a deployment: Deployments and their statuses, comments, permissions and the commit's zipball.

Kept apart from the AWS steps because these are the only calls that need GitHub, so an S3 upload (which deploys
with no GitHub at all) never reaches this module, and what the repository shows stays in one place.
"""

from __future__ import annotations

import io
import urllib.parse
import zipfile
from typing import Any

import gidgethub
from gidgethub import sansio
from gidgethub.abc import GitHubAPI

from bot.plugin import hidden_marker
from handlers.lambda_deploy.config import PushRule
from handlers.lambda_deploy.errors import DeployError

MARKER = hidden_marker("lambda_deploy")  # in every reply, so the bot never answers itself
WRITE_PERMISSIONS = frozenset({"admin", "maintain", "write"})


class GitHubDeployment:
    """A GitHub Deployment and its statuses, so the repository shows what runs where."""

    def __init__(self, gh: GitHubAPI, repository: str, deployment_id: int | None) -> None:
        self.gh = gh
        self.repository = repository
        self.id = deployment_id

    @classmethod
    async def create(cls, gh: GitHubAPI, repository: str, sha: str, rule: PushRule, function: str) -> GitHubDeployment:
        created = await gh.post(
            f"/repos/{repository}/deployments",
            data={
                "ref": sha,
                "environment": rule.environment,
                "auto_merge": False,
                "required_contexts": [],
                "task": "deploy:lambda",
                "description": f"AWS Lambda {function}",
                "payload": {"function": function, "alias": rule.alias},
            },
        )
        deployment_id = created.get("id") if isinstance(created, dict) else None
        return cls(gh, repository, deployment_id if isinstance(deployment_id, int) else None)

    async def status(self, state: str, description: str, environment_url: str | None = None) -> None:
        if self.id is None:  # dry-run: the creation was only recorded, there is no deployment to update
            return
        data: dict[str, Any] = {"state": state, "description": description[:140]}
        if environment_url:
            data["environment_url"] = environment_url
        await self.gh.post(f"/repos/{self.repository}/deployments/{self.id}/statuses", data=data)


def console_url(function_arn: str, version: str) -> str:
    """The AWS console page of the published version (the region is in the ARN)."""
    parts = function_arn.split(":")
    region, function = (parts[3], parts[6]) if len(parts) >= 7 else ("us-east-1", function_arn)
    return (
        f"https://{region}.console.aws.amazon.com/lambda/home?region={region}#/functions/{function}/versions/{version}"
    )


async def permission_of(gh: GitHubAPI, repository: str, user: str) -> tuple[bool, str]:
    """Whether the commenter may deploy, and their role, asked from GitHub rather than trusted from the payload.

    ``role_name`` tells maintain from write; ``permission`` (admin/write/read/none) also covers custom roles.
    """
    try:
        found = await gh.getitem(f"/repos/{repository}/collaborators/{user}/permission")
    except gidgethub.BadRequest:
        return False, "none"
    if not isinstance(found, dict):
        return False, "unknown"
    role, permission = str(found.get("role_name") or ""), str(found.get("permission") or "none")
    return role in WRITE_PERMISSIONS or permission in WRITE_PERMISSIONS, role or permission


ON_BRANCH = frozenset({"identical", "behind"})  # compare base...head: head is the branch's tip or an ancestor of it


async def branch_status(gh: GitHubAPI, repository: str, branch: str, sha: str) -> str:
    """How GitHub's compare API places ``sha`` against ``branch``: ``identical`` or ``behind`` when the commit is on
    the branch; ``ahead`` or ``diverged`` when it is not; ``unknown`` when GitHub cannot compare them at all (a
    commit only a fork has, a branch that does not exist)."""
    url = f"/repos/{repository}/compare/{urllib.parse.quote(branch, safe='/')}...{sha}"
    try:
        found = await gh.getitem(url)
    except gidgethub.BadRequest:
        return "unknown"
    return str(found.get("status") or "unknown") if isinstance(found, dict) else "unknown"


async def reply(gh: GitHubAPI, repository: str, number: int, text: str) -> None:
    await gh.post(f"/repos/{repository}/issues/{number}/comments", data={"body": f"{text}\n\n{MARKER}"})


async def download_zipball(gh: GitHubAPI, repository: str, sha: str) -> bytes:
    """The commit's zipball, as raw bytes.

    gidgethub decodes every body as text, so this goes through the client's ``_request``, the one I/O method
    gidgethub asks a client to provide: it still goes to the pinned API origin with the bot's credentials, and
    the redirect to GitHub's codeload host is followed by aiohttp.
    """
    url = sansio.format_url(f"/repos/{repository}/zipball/{sha}", {}, base_url=gh.base_url)
    headers = sansio.create_headers(gh.requester, oauth_token=gh.oauth_token)
    status, _, body = await gh._request("GET", url, headers)
    if status != 200:
        raise DeployError(f"cannot download the zipball of {sha} from {repository}: HTTP {status}")
    return body


def repackage_zipball(data: bytes, subdir: str = "") -> bytes:
    """GitHub's zipball without its ``owner-repo-sha/`` top folder (and, with ``subdir``, only that folder).

    Lambda expects the handler at the zip's root, which a zipball never has. Blocking (CPU): run it in a thread.
    """
    inner_prefix = subdir.strip("/") + "/" if subdir.strip("/") else ""
    out = io.BytesIO()
    count = 0
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                _, _, path = info.filename.partition("/")
                if info.is_dir() or not path.startswith(inner_prefix) or not path[len(inner_prefix) :]:
                    continue
                entry = zipfile.ZipInfo(path[len(inner_prefix) :], date_time=info.date_time)
                entry.external_attr = info.external_attr
                entry.compress_type = zipfile.ZIP_DEFLATED
                dst.writestr(entry, src.read(info))
                count += 1
    except zipfile.BadZipFile:
        raise DeployError("GitHub's zipball of the commit is not a valid zip") from None
    if not count:
        raise DeployError(f"the commit has no files under {subdir or 'its root'}")
    return out.getvalue()

"""Facts about GitHub's webhook events: the names GitHub documents, and how to tell a payload's event without
its X-GitHub-Event header.

Sources: GitHub's "Webhook events and payloads" reference (docs.github.com, webhooks), and the event names of
the npm package @octokit/webhooks-examples 7.6.1 (github.com/octokit/webhooks), which also covers GitHub
Enterprise Server 3.1 to 3.5. A name missing here still reaches the handlers; it only counts as ``other`` in
metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.delivery import S3_EVENT

DOCUMENTED_EVENTS = frozenset(
    {
        "branch_protection_configuration",
        "branch_protection_rule",
        "cache_sync",
        "check_run",
        "check_suite",
        "code_scanning_alert",
        "commit_comment",
        "content_reference",
        "create",
        "custom_property",
        "custom_property_values",
        "delete",
        "dependabot_alert",
        "deploy_key",
        "deployment",
        "deployment_protection_rule",
        "deployment_review",
        "deployment_status",
        "discussion",
        "discussion_comment",
        "enterprise",
        "fork",
        "github_app_authorization",
        "gollum",
        "installation",
        "installation_repositories",
        "installation_target",
        "issue_comment",
        "issue_dependencies",
        "issues",
        "label",
        "marketplace_purchase",
        "member",
        "membership",
        "merge_group",
        "meta",
        "milestone",
        "org_block",
        "organization",
        "package",
        "page_build",
        "personal_access_token_request",
        "ping",
        "project",
        "project_card",
        "project_column",
        "projects_v2",
        "projects_v2_item",
        "projects_v2_status_update",
        "public",
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "pull_request_review_thread",
        "push",
        "registry_package",
        "release",
        "repository",
        "repository_advisory",
        "repository_dispatch",
        "repository_import",
        "repository_ruleset",
        "repository_vulnerability_alert",
        "secret_scanning_alert",
        "secret_scanning_alert_location",
        "secret_scanning_scan",
        "security_advisory",
        "security_and_analysis",
        "sponsorship",
        "star",
        "status",
        "sub_issues",
        "team",
        "team_add",
        "user",
        "watch",
        "workflow_dispatch",
        "workflow_job",
        "workflow_run",
    }
)
OTHER = "other"


def event_label(event: str) -> str:
    """The metric label for an event name: itself when GitHub documents it (or it is hookbot's own ``s3``),
    else ``other``.

    X-GitHub-Event is covered by no signature, so a replayed body under made-up event names must not be able
    to add a metric series per name: the labels are this fixed set.
    """
    return event if event in DOCUMENTED_EVENTS or event == S3_EVENT else OTHER


# How a payload without its X-GitHub-Event header (the old GitHub-to-SNS service's messages) is told apart: for each
# event, the top-level keys every one of its payloads carries, and its actions: a tuple of the documented ones (None
# in it: the payload may carry no action), or ANY_ACTION for events with many actions, which GitHub keeps adding to.
# Derived from the 726 examples of @octokit/webhooks-examples 7.6.1 (api.github.com and GHES 3.1 to 3.5) and the
# actions the package lists per event; tests/bot/test_legacy_events.py runs every example through event_from_payload.
# Keys most events carry (who, where): required by the events that have nothing else, but never what makes one
# event's shape more specific than another's.
ENVELOPE = frozenset({"sender", "repository", "organization", "installation", "enterprise"})
ANY_ACTION = None
NO_ACTION: tuple[str | None, ...] = (None,)
LEGACY_SHAPES: dict[str, tuple[tuple[str, ...], tuple[str | None, ...] | None]] = {
    "branch_protection_rule": (("rule",), ("created", "deleted", "edited")),
    "cache_sync": (("cache_location", "ref", "before", "after"), NO_ACTION),
    "check_run": (("check_run",), ("completed", "created", "requested_action", "rerequested")),
    "check_suite": (("check_suite",), ("completed", "requested", "rerequested")),
    "code_scanning_alert": (
        ("alert", "commit_oid", "ref"),
        ("appeared_in_branch", "closed_by_user", "created", "fixed", "reopened", "reopened_by_user"),
    ),
    "commit_comment": (("comment",), ("created",)),
    "content_reference": (("content_reference",), ("created",)),
    "create": (("ref", "ref_type", "master_branch", "pusher_type"), NO_ACTION),
    "delete": (("ref", "ref_type", "pusher_type"), NO_ACTION),
    "dependabot_alert": (("alert",), ("created", "dismissed", "fixed", "reintroduced", "reopened")),
    "deploy_key": (("key",), ("created", "deleted")),
    "deployment": (("deployment",), ("created", None)),
    "deployment_review": (("environment", "reviewers", "workflow_run"), ("requested", "approved", "rejected")),
    "deployment_status": (("deployment", "deployment_status"), ("created", None)),
    "discussion": (("discussion",), ANY_ACTION),
    "discussion_comment": (("comment", "discussion"), ("created", "deleted", "edited")),
    "enterprise": (("sender",), ("anonymous_access_disabled", "anonymous_access_enabled")),
    "fork": (("forkee",), NO_ACTION),
    "github_app_authorization": (("sender",), ("revoked",)),
    "gollum": (("pages",), NO_ACTION),
    # An installation's own keys are envelope keys: only one that lists its repositories can be told apart.
    "installation": (
        ("installation", "repositories"),
        ("created", "deleted", "new_permissions_accepted", "suspend", "unsuspend"),
    ),
    "installation_repositories": (("repositories_added", "repositories_removed"), ("added", "removed")),
    "issue_comment": (("comment", "issue"), ("created", "deleted", "edited")),
    "issues": (("issue",), ANY_ACTION),
    "label": (("label",), ("created", "deleted", "edited")),
    "marketplace_purchase": (("marketplace_purchase",), ANY_ACTION),
    "member": (("member",), ("added", "edited", "removed")),
    "membership": (("member", "scope", "team"), ("added", "removed")),
    "merge_group": (("merge_group",), ANY_ACTION),
    "meta": (("hook", "hook_id"), ("deleted",)),
    "milestone": (("milestone",), ("closed", "created", "deleted", "edited", "opened")),
    "org_block": (("blocked_user",), ("blocked", "unblocked")),
    "organization": (
        ("organization", "sender"),
        ("created", "deleted", "member_added", "member_invited", "member_removed", "renamed"),
    ),
    "package": (("package",), ANY_ACTION),
    "page_build": (("build", "id"), NO_ACTION),
    "ping": (("zen", "hook_id"), NO_ACTION),
    "project": (("project",), ANY_ACTION),
    "project_card": (("project_card",), ANY_ACTION),
    "project_column": (("project_column",), ANY_ACTION),
    "projects_v2_item": (("projects_v2_item",), ANY_ACTION),
    "public": (("repository", "sender"), NO_ACTION),
    "pull_request": (("pull_request", "number"), ANY_ACTION),
    "pull_request_review": (("pull_request", "review"), ANY_ACTION),
    "pull_request_review_comment": (("pull_request", "comment"), ANY_ACTION),
    "pull_request_review_thread": (("pull_request", "thread"), ANY_ACTION),
    "push": (("ref", "before", "after", "pusher", "commits"), NO_ACTION),
    "release": (("release",), ANY_ACTION),
    "repository": (
        ("repository", "sender"),
        (
            "anonymous_access_disabled",
            "anonymous_access_enabled",
            "archived",
            "created",
            "deleted",
            "edited",
            "privatized",
            "publicized",
            "renamed",
            "transferred",
            "unarchived",
        ),
    ),
    "repository_dispatch": (("branch", "client_payload"), ANY_ACTION),
    "repository_import": (("status",), NO_ACTION),
    "repository_vulnerability_alert": (("alert",), ("create", "dismiss", "resolve")),
    "secret_scanning_alert": (("alert",), ("created", "reopened", "resolved", "revoked")),
    "secret_scanning_alert_location": (("alert", "location"), ("created",)),
    "security_advisory": (("security_advisory",), ANY_ACTION),
    "sponsorship": (("sponsorship",), ANY_ACTION),
    "star": (("starred_at",), ("created", "deleted")),
    "status": (("sha", "state", "context", "commit"), NO_ACTION),
    "team": (("team",), ("added_to_repository", "created", "deleted", "edited", "removed_from_repository")),
    "team_add": (("team",), NO_ACTION),
    "user": (("user",), ("created", "deleted")),
    "watch": (("repository", "sender"), ("started",)),
    "workflow_dispatch": (("inputs", "ref", "workflow"), NO_ACTION),
    "workflow_job": (("workflow_job",), ANY_ACTION),
    "workflow_run": (("workflow", "workflow_run"), ("completed", "in_progress", "requested")),
}


def _specific_keys(event: str) -> frozenset[str]:
    return frozenset(LEGACY_SHAPES[event][0]) - ENVELOPE


def _fits_action(event: str, action: str | None) -> bool:
    actions = LEGACY_SHAPES[event][1]
    return action is not None if actions is ANY_ACTION else action in actions


def event_from_payload(payload: Mapping[str, Any]) -> str | None:
    """The event a payload without its X-GitHub-Event header is, or None when that cannot be told for sure.

    The candidates are the events whose keys the payload has and whose actions include its action; of those, the
    one whose keys include every other candidate's keys wins (an issue comment has an ``issue`` too). Anything
    else is ambiguous, and None: guessing wrong would run one event's handlers on another's payload (a
    ``team.created`` taken for ``installation``), which is worse than refusing it.
    """
    keys = payload.keys()
    action = payload.get("action")
    action = action if isinstance(action, str) else None
    candidates = [
        event
        for event, (required, _) in LEGACY_SHAPES.items()
        if all(key in keys for key in required) and _fits_action(event, action)
    ]
    best = [
        event for event in candidates if not any(_specific_keys(event) < _specific_keys(o) for o in candidates)
    ]
    return best[0] if len(best) == 1 else None

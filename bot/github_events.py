"""Facts about GitHub's webhook events: the names GitHub documents.

Sources: GitHub's "Webhook events and payloads" reference (docs.github.com, webhooks), and the event names of
the npm package @octokit/webhooks-examples 7.6.1 (github.com/octokit/webhooks), which also covers GitHub
Enterprise Server 3.1 to 3.5. A name missing here still reaches the handlers; it only counts as ``other`` in
metrics.
"""

from __future__ import annotations

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

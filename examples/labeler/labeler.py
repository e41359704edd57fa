"""Label every new issue, so none waits unseen: a third-party hookbot plugin (README: "Writing a plugin")."""

from __future__ import annotations

from dataclasses import dataclass

from bot.plugin import Context, Event, GitHubAPI, Router, Setup, issue_path

router = Router()


@dataclass(frozen=True)
class LabelerConfig:
    label: str = "triage"


def setup(plugin: Setup) -> LabelerConfig:
    return LabelerConfig(**plugin.section)  # an unknown key stops hookbot at start, naming [labeler]


@router.register("issues", action="opened")
async def label_new_issue(event: Event, gh: GitHubAPI, ctx: Context[LabelerConfig]) -> None:
    if not ctx.is_from_bot(event):
        await gh.post(issue_path(event, "labels"), data={"labels": [ctx.config.label]})

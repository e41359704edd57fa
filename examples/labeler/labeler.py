"""Label every new issue, so none waits unseen: a third-party hookbot plugin (README: "Writing a plugin")."""

from dataclasses import dataclass

from bot.plugin import Context, Event, GitHubAPI, Router, Section, Setting, Setup, issue_path

router = Router()
SETTINGS = Section("labeler", (Setting("label", "text", "triage", "the label every new issue gets"),))


@dataclass(frozen=True)
class LabelerConfig:
    label: str = "triage"


def setup(plugin: Setup) -> LabelerConfig:
    return LabelerConfig(**plugin.section)  # its keys and types were checked against SETTINGS


@router.register("issues", action="opened")
async def label_new_issue(event: Event, gh: GitHubAPI, ctx: Context[LabelerConfig]) -> None:
    if not ctx.is_from_bot(event):
        await gh.post(issue_path(event, "labels"), data={"labels": [ctx.config.label]})

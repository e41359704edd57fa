"""Run the user's own executables on events: adnanh/webhook's hooks, in hookbot's plugin shape.

Nothing from a payload ever reaches a shell: the command is an argv list, and each ``{dotted.path}`` placeholder
is replaced inside its own argv item, so a title such as ``$(rm -rf ~)`` arrives as that text. The payload goes on
stdin as JSON, and the child gets a new, small environment (``HOOKBOT_*``, ``PATH`` and the names the config
allows), never hookbot's own, which holds the webhook secret and the GitHub token; the values it does pass are
secrets, scrubbed from the output hookbot logs, stores and comments. A placeholder value that would begin an
argument with ``-`` is refused unless the hook allows it, so payload text never becomes an option. Each command
runs in its own process group, killed whole when the command is done or times out, so nothing it started
outlives it. Exit 0 is success and is remembered per hook, so a retry of the delivery runs only the hooks that
failed; a non-zero exit or a timeout is retried, a hook that can never run for this delivery (a missing
placeholder, a NUL byte, a missing command) is not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bot.plugin import (
    WILDCARD,
    Context,
    Event,
    GitHubAPI,
    RepoSetting,
    RepositorySettings,
    Router,
    Section,
    Setting,
    Setup,
)

if TYPE_CHECKING:
    from handlers.exec.hooks import ExecConfig

router = Router()

SETTINGS = Section(
    "exec",
    (
        Setting("hooks", "tables", (), "the commands to run, each an [[exec.hooks]] table"),
        Setting("max_concurrent", "int", 4, "commands running at once, across all deliveries"),
        Setting("output_limit", "int", 65536, "bytes of stdout and of stderr kept for the log"),
    ),
)


def setup(plugin: Setup) -> ExecConfig | None:
    """No ``[exec]`` section: no hooks, said without importing the hook runner, which every start (a Lambda cold
    start above all) would otherwise pay for; any section is checked in full (hooks.configure)."""
    if not plugin.section:
        return None
    from handlers.exec import hooks

    return hooks.configure(plugin.section, plugin.env)


def needs_github(config: ExecConfig) -> bool:
    """Only a hook that posts its output as a comment calls GitHub."""
    return any(hook.comment_output for hook in config.hooks)


def _narrow(config: ExecConfig, values: Mapping[str, Any]) -> ExecConfig:
    from handlers.exec import hooks

    return hooks.narrow(config, values)


repository_settings: RepositorySettings[ExecConfig] = RepositorySettings(
    settings=(
        RepoSetting("hooks", "names", "the names of the server's hooks to run for this repository, and only those"),
    ),
    narrow=_narrow,
)


@router.register(WILDCARD)
async def run_matching_hooks(event: Event, gh: GitHubAPI, ctx: Context[ExecConfig]) -> None:
    from handlers.exec import hooks

    await hooks.run_matching_hooks(event, gh, ctx)

"""The ways a deployment ends without running, told apart because they are reported differently.

``Superseded`` is not a failure: something newer won, so a GitHub Deployment becomes ``inactive``.
``DeployError`` is a failure a person can act on (a missing artifact, a denied permission): its message becomes the
``failure`` status or the reply. ``Refused`` is a target hookbot will not deploy to whoever asks (a name made from
an upload's key that is no plain function name, hookbot's own function): logged and skipped, never retried.
Anything else is a bug or an outage and goes up to the dispatcher. They live in their own module so that every
step (ordering, AWS, GitHub) can raise them without importing the others.
"""

from __future__ import annotations

from bot.plugin import HandlerError


class Superseded(Exception):
    """A newer deployment to the same function is waiting or already done; this one must not run."""


class DeployError(HandlerError):
    """A deployment failed for one reason a person can act on (the message is that reason)."""


class Refused(DeployError):
    """A function name hookbot will not deploy to, whatever the trigger: logged and skipped, never retried."""

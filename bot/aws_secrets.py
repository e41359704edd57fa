"""Secrets kept in SSM Parameter Store or Secrets Manager, named by environment variables and fetched at start.

In AWS, a secret written into a function's environment (or resolved into it by a CloudFormation dynamic reference)
can be read by anyone allowed ``lambda:GetFunctionConfiguration``, and shows in the console. So the deploy stack
gives hookbot only the *name* of each secret, and hookbot reads the value itself with its own role:

    GITHUB_WEBHOOK_SECRET_SSM_PARAMETER=/hookbot/webhook-secret       (SecureString, decrypted on read)
    GITHUB_TOKEN_SECRETS_MANAGER_ID=arn:aws:secretsmanager:...        (SecretString)

Each ``<NAME>_SSM_PARAMETER`` or ``<NAME>_SECRETS_MANAGER_ID`` fills ``<NAME>`` before settings are read, for the
variables in SECRET_VARIABLES. Nothing here imports boto3 unless such a reference is set, so a container configured
with plain values starts as fast as before. Values are read once per process (per Lambda cold start): rotating a
secret takes effect on the next cold start, or at once when a new version of the function is published.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bot.config_schema import ConfigError

SECRET_VARIABLES = ("GITHUB_WEBHOOK_SECRET", "GITHUB_TOKEN", "GITHUB_PRIVATE_KEY")
SSM_SUFFIX = "_SSM_PARAMETER"
SECRETS_MANAGER_SUFFIX = "_SECRETS_MANAGER_ID"

ClientFactory = Callable[[str], Any]


def secret_references(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Which variables are to be fetched, and from where: {name: ("ssm" | "secretsmanager", id)} (pure)."""
    references: dict[str, tuple[str, str]] = {}
    for name in SECRET_VARIABLES:
        ssm = env.get(name + SSM_SUFFIX, "").strip()
        secrets_manager = env.get(name + SECRETS_MANAGER_SUFFIX, "").strip()
        given = [label for label, value in ((name, env.get(name)), (name + SSM_SUFFIX, ssm)) if value]
        if secrets_manager:
            given.append(name + SECRETS_MANAGER_SUFFIX)
        if len(given) > 1:
            raise ConfigError(f"{' and '.join(given)} are both set; set only one way to get {name}")
        if ssm:
            references[name] = ("ssm", ssm)
        elif secrets_manager:
            references[name] = ("secretsmanager", secrets_manager)
    return references


def _default_client(service: str) -> Any:
    from bot.aws import AwsClients  # boto3 only now that a reference asks for it

    return AwsClients().client(service)


def _fetch_ssm(client: Any, names: dict[str, str]) -> dict[str, str]:
    """One GetParameters call (up to 10 names) with decryption; a missing name is a ConfigError saying which."""
    response = client.get_parameters(Names=sorted(set(names.values())), WithDecryption=True)
    missing = response.get("InvalidParameters", [])
    if missing:
        raise ConfigError(
            f"SSM parameter {', '.join(missing)} does not exist (or is not readable here); create it with "
            "`aws ssm put-parameter --type SecureString --name NAME --value ...` (deploy/README.md)"
        )
    values = {parameter["Name"]: parameter["Value"] for parameter in response["Parameters"]}
    return {variable: values[parameter] for variable, parameter in names.items()}


def resolve_secrets(env: Mapping[str, str], client: ClientFactory | None = None) -> Mapping[str, str]:
    """``env`` with every referenced secret filled in; ``env`` itself when there is nothing to fetch."""
    references = secret_references(env)
    if not references:
        return env
    make_client = client or _default_client
    from botocore.exceptions import BotoCoreError, ClientError

    resolved = dict(env)
    ssm_names = {name: ref for name, (kind, ref) in references.items() if kind == "ssm"}
    try:
        if ssm_names:
            resolved.update(_fetch_ssm(make_client("ssm"), ssm_names))
        for name, (kind, ref) in references.items():
            if kind == "secretsmanager":
                resolved[name] = make_client("secretsmanager").get_secret_value(SecretId=ref)["SecretString"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise ConfigError(
            f"cannot read the secrets named by {', '.join(sorted(n + '_*' for n in references))}: "
            f"{error.get('Code', 'error')}: {error.get('Message', exc)}"
        ) from None
    except BotoCoreError as exc:
        raise ConfigError(f"cannot reach AWS to read the configured secrets: {exc}") from None
    return resolved

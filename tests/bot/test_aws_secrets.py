"""Secrets named by SSM / Secrets Manager references, read through moto's real HTTP API into Settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from bot.aws_secrets import resolve_secrets, secret_references
from bot.config import load_settings
from bot.config_schema import ConfigError

PRIVATE_KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIB...\n-----END RSA PRIVATE KEY-----\n"


def put_parameter(name: str, value: str) -> None:
    boto3.client("ssm").put_parameter(Name=name, Value=value, Type="SecureString")


def test_ssm_securestrings_fill_the_settings(moto: str, tmp_path: Path) -> None:
    put_parameter("/hookbot/webhook-secret", "from-ssm-secret-0123456789")
    put_parameter("/hookbot/github-token", "ghp_from_ssm")
    env = {
        "GITHUB_WEBHOOK_SECRET_SSM_PARAMETER": "/hookbot/webhook-secret",
        "GITHUB_TOKEN_SSM_PARAMETER": "/hookbot/github-token",
        "HOOKBOT_STATE_DIR": str(tmp_path),
    }

    settings = load_settings(env)

    assert settings.github.webhook_secret == "from-ssm-secret-0123456789"
    assert settings.github.token == "ghp_from_ssm"
    assert "GITHUB_TOKEN" not in env  # the caller's mapping is left alone


def test_secrets_manager_fills_a_github_app_key(moto: str, tmp_path: Path) -> None:
    arn = boto3.client("secretsmanager").create_secret(Name="hookbot/app-key", SecretString=PRIVATE_KEY)["ARN"]
    env = {"GITHUB_APP_ID": "12345", "GITHUB_PRIVATE_KEY_SECRETS_MANAGER_ID": arn, "GITHUB_WEBHOOK_SECRET": "s" * 16}

    settings = load_settings(env)

    assert settings.github.app_id == "12345"
    assert settings.github.private_key == PRIVATE_KEY


def test_a_missing_parameter_names_itself_and_how_to_create_it(moto: str) -> None:
    with pytest.raises(ConfigError, match=r"SSM parameter /hookbot/nope does not exist .*put-parameter"):
        load_settings({"GITHUB_TOKEN_SSM_PARAMETER": "/hookbot/nope"})


def test_a_missing_secrets_manager_secret_is_a_config_error(moto: str) -> None:
    with pytest.raises(ConfigError, match=r"GITHUB_TOKEN_\*: ResourceNotFoundException"):
        load_settings({"GITHUB_TOKEN_SECRETS_MANAGER_ID": "hookbot/missing"})


def test_a_value_and_a_reference_for_the_same_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="GITHUB_TOKEN and GITHUB_TOKEN_SSM_PARAMETER are both set"):
        secret_references({"GITHUB_TOKEN": "ghp_x", "GITHUB_TOKEN_SSM_PARAMETER": "/hookbot/github-token"})


def test_without_references_nothing_is_fetched() -> None:
    def no_aws(service: str) -> Any:
        raise AssertionError(f"asked for a {service} client")

    env = {"GITHUB_TOKEN": "ghp_plain", "GITHUB_WEBHOOK_SECRET_SSM_PARAMETER": "  "}
    assert resolve_secrets(env, no_aws) is env


def test_the_relay_topic_can_come_from_the_environment(tmp_path: Path) -> None:
    arn = "arn:aws:sns:us-east-1:123456789012:hookbot-deliveries"
    settings = load_settings({"HOOKBOT_RELAY_TOPIC_ARN": arn, "HOOKBOT_STATE_DIR": str(tmp_path)})
    assert settings.relay.topic_arn == arn

"""deploy/template.yaml: cfn-lint clean, and the security properties the stack promises, checked by parsing it."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.decode import cfn_yaml

from bot.aws_lambda import LambdaEntry
from bot.aws_secrets import SECRET_VARIABLES, SSM_SUFFIX
from bot.cli import build_parser
from bot.config import load_settings
from bot.package import BUNDLED_CONFIG_NAME
from bot.runtime import Runtime
from tests.fake_github import FakeGitHub
from tests.helpers import ROOT, SECRET, Chain, fixture_bytes, github_headers
from tests.lambda_events import function_url_event, sns_event

TEMPLATE_PATH = ROOT / "deploy" / "template.yaml"
ISSUE_OPENED = fixture_bytes("github/issues.opened.json")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return dict(cfn_yaml.load(str(TEMPLATE_PATH)))


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == kind}


def statements(role: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every statement of a role's inline policies, conditional policies included (both branches of Fn::If)."""
    for policy in role["Properties"]["Policies"]:
        for branch in policy["Fn::If"][1:] if "Fn::If" in policy else [policy]:
            if isinstance(branch, dict) and "PolicyDocument" in branch:
                yield from branch["PolicyDocument"]["Statement"]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_cfn_lint_is_clean_offline() -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run(
        [str(cfn_lint), "--include-checks", "I", "--", str(TEMPLATE_PATH)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_worker_may_be_invoked_only_by_its_own_topic(template: dict[str, Any]) -> None:
    permissions = resources(template, "AWS::Lambda::Permission")
    for name, permission in permissions.items():
        props = permission["Properties"]
        if props["Principal"] == "*":  # public only through the Function URL, whose deliveries carry an HMAC
            assert props["FunctionName"] == {"Ref": "IngressFunction"}, name
            assert props.get("FunctionUrlAuthType") == "NONE" or props.get("InvokedViaFunctionUrl") is True, name
        else:
            assert "SourceArn" in props, f"{name} lets {props['Principal']} invoke from any source"
    worker = permissions["WorkerSnsPermission"]["Properties"]
    assert worker["Principal"] == "sns.amazonaws.com"
    assert worker["SourceArn"] == {"Ref": "DeliveryTopic"}
    subscription = template["Resources"]["WorkerSubscription"]["Properties"]
    assert subscription["Protocol"] == "lambda"
    assert subscription["Endpoint"] == {"Fn::GetAtt": ["WorkerFunction", "Arn"]}


def test_no_role_is_granted_anything_on_every_resource(template: dict[str, Any]) -> None:
    for name, role in resources(template, "AWS::IAM::Role").items():
        for statement in statements(role):
            assert statement["Effect"] == "Allow"
            for resource in as_list(statement["Resource"]):
                text = resource if isinstance(resource, str) else str(resource)
                assert text != "*", f"{name} {statement.get('Sid')} allows {statement['Action']} on *"
                assert not re.search(r":function:\*|:s3:::\*", text), f"{name}: every function or bucket: {text}"


def test_deploy_rights_are_limited_to_the_configured_functions(template: dict[str, Any]) -> None:
    worker = template["Resources"]["WorkerRole"]
    granted: dict[str, list[Any]] = {}
    for statement in statements(worker):
        for action in as_list(statement["Action"]):
            granted.setdefault(action, []).extend(as_list(statement["Resource"]))
    assert "lambda:UpdateFunctionCode" in granted
    for action in ("lambda:UpdateFunctionCode", "lambda:PublishVersion", "lambda:UpdateAlias"):
        (resource,) = granted[action]
        assert resource["Fn::Sub"].endswith(":function:${DeployFunctionPrefix}*")
    assert not any(
        action.startswith(("lambda:Create", "iam:")) and action != "lambda:CreateAlias" for action in granted
    )
    assert not any(action.startswith("s3:") and not action.startswith(("s3:Get", "s3:List")) for action in granted)
    # The artifacts it deploys, and the large deliveries the ingress offloaded (tests/bot/test_aws_recovery.py).
    assert granted["s3:GetObject"] == [
        {"Fn::Sub": "${PayloadBucket.Arn}/*"},
        {"Fn::Sub": "arn:${AWS::Partition}:s3:::${ArtifactBucket}/*"},
    ]
    prefix = template["Parameters"]["DeployFunctionPrefix"]
    assert "*" not in prefix["AllowedPattern"].strip("^$").replace("]*", "]")  # no wildcard can be passed in


def test_the_ingress_may_only_publish_to_the_topic(template: dict[str, Any]) -> None:
    actions = {}
    for statement in statements(template["Resources"]["IngressRole"]):
        for action in as_list(statement["Action"]):
            actions[action] = as_list(statement["Resource"])
    assert set(actions) == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "ssm:GetParameters",
        "sns:Publish",
        "s3:PutObject",
    }
    assert actions["sns:Publish"] == [{"Ref": "DeliveryTopic"}]
    assert actions["s3:PutObject"] == [{"Fn::Sub": "${PayloadBucket.Arn}/*"}]  # large deliveries only
    assert actions["ssm:GetParameters"][0]["Fn::Sub"].endswith("parameter${SecretsPath}/webhook-secret")


def test_the_dedupe_table_expires_entries(template: dict[str, Any]) -> None:
    (table,) = resources(template, "AWS::DynamoDB::Table").values()
    props = table["Properties"]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["KeySchema"] == [{"AttributeName": "delivery_id", "KeyType": "HASH"}]
    assert props["AttributeDefinitions"] == [{"AttributeName": "delivery_id", "AttributeType": "S"}]
    worker_env = template["Resources"]["WorkerFunction"]["Properties"]["Environment"]["Variables"]
    assert worker_env["HOOKBOT_DEDUPE_TABLE"] == {"Ref": "DedupeTable"}


def test_secrets_are_never_template_parameters_or_plain_environment(template: dict[str, Any]) -> None:
    for name, parameter in template["Parameters"].items():
        assert "NoEcho" not in parameter, f"{name}: a secret value passed as a parameter ends up in the stack"
    for name, function in resources(template, "AWS::Lambda::Function").items():
        variables = function["Properties"]["Environment"]["Variables"]
        assert not set(variables) & set(SECRET_VARIABLES), f"{name} carries a secret value in its environment"
        assert "GITHUB_WEBHOOK_SECRET" + SSM_SUFFIX in variables, name
    assert "{{resolve:" not in TEMPLATE_PATH.read_text()  # dynamic references would land in the environment


def test_functions_run_bot_aws_lambda_on_python_312_with_names_hookbot_reads(template: dict[str, Any]) -> None:
    known = "".join((ROOT / "bot" / module).read_text() for module in ("config.py", "settings.py"))
    functions = resources(template, "AWS::Lambda::Function")
    assert set(functions) == {"IngressFunction", "WorkerFunction"}
    for name, function in functions.items():
        props = function["Properties"]
        assert props["Handler"] == "bot.aws_lambda.handler"
        assert props["Runtime"] == "python3.12"
        assert props["Architectures"] == [{"Ref": "CodeArchitecture"}]
        assert (TEMPLATE_PATH.parent / props["Code"]).resolve() == ROOT / build_parser().parse_args(["package"]).output
        for variable in props["Environment"]["Variables"]:
            secret_ref = variable.endswith(SSM_SUFFIX) and variable.removesuffix(SSM_SUFFIX) in SECRET_VARIABLES
            assert secret_ref or f'"{variable}"' in known, f"{name}: hookbot never reads {variable}"
    assert template["Parameters"]["CodeArchitecture"]["Default"] == "arm64"
    ingress_env = functions["IngressFunction"]["Properties"]["Environment"]["Variables"]
    assert ingress_env["HOOKBOT_RELAY_TOPIC_ARN"] == {"Ref": "DeliveryTopic"}
    worker_env = functions["WorkerFunction"]["Properties"]["Environment"]["Variables"]
    assert worker_env["SNS_TOPIC_ARNS"] == {"Ref": "DeliveryTopic"}
    bundled = {"Fn::If": ["HasBundledConfig", f"/var/task/{BUNDLED_CONFIG_NAME}", {"Ref": "AWS::NoValue"}]}
    assert worker_env["HOOKBOT_CONFIG"] == ingress_env["HOOKBOT_CONFIG"] == bundled


def test_failures_end_in_the_queue_and_the_url_is_an_output(template: dict[str, Any]) -> None:
    res = template["Resources"]
    invoke_config = res["WorkerInvokeConfig"]["Properties"]
    assert invoke_config["FunctionName"] == {"Ref": "WorkerFunction"}
    assert invoke_config["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["FailedDeliveries", "Arn"]}
    redrive = res["WorkerSubscription"]["Properties"]["RedrivePolicy"]
    assert redrive == {"deadLetterTargetArn": {"Fn::GetAtt": ["FailedDeliveries", "Arn"]}}
    assert res["IngressUrl"]["Properties"]["AuthType"] == "NONE"
    assert template["Outputs"]["WebhookUrl"]["Value"] == {"Fn::GetAtt": ["IngressUrl", "FunctionUrl"]}


# --- the template's own environment drives the real code: Function URL -> relay -> SNS -> worker -> comment --------


def resolve(value: Any, refs: dict[str, Any], conditions: dict[str, bool]) -> Any:
    """Enough of CloudFormation's intrinsics (Ref, Fn::Sub, Fn::If, AWS::NoValue) for the functions' environment."""
    if isinstance(value, dict) and "Ref" in value:
        return refs[value["Ref"]]
    if isinstance(value, dict) and "Fn::Sub" in value:
        return re.sub(r"\$\{([^}]+)\}", lambda m: str(refs[m.group(1)]), value["Fn::Sub"])
    if isinstance(value, dict) and "Fn::If" in value:
        name, yes, no = value["Fn::If"]
        return resolve(yes if conditions[name] else no, refs, conditions)
    return value


def environment(template: dict[str, Any], function: str, refs: dict[str, Any]) -> dict[str, str]:
    conditions = {
        "UseToken": refs["GitHubAuth"] == "token",
        "UseApp": refs["GitHubAuth"] == "app",
        "HasBundledConfig": refs["BundledConfig"] == "true",
    }
    variables = template["Resources"][function]["Properties"]["Environment"]["Variables"]
    resolved = {name: resolve(value, refs, conditions) for name, value in variables.items()}
    return {name: str(value) for name, value in resolved.items() if value is not None}


async def test_the_stacks_environment_relays_a_delivery_into_a_comment(
    template: dict[str, Any], moto: str, tmp_path: Path, fake_github: tuple[FakeGitHub, str]
) -> None:
    fake, github_url = fake_github
    chain = Chain()  # the stack's topic, with a queue standing in for Lambda's SNS subscription
    table = template["Resources"]["DedupeTable"]["Properties"]
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName="hookbot-dedupe",
        AttributeDefinitions=table["AttributeDefinitions"],
        KeySchema=table["KeySchema"],
        BillingMode=table["BillingMode"],
    )
    dynamodb.update_time_to_live(TableName="hookbot-dedupe", TimeToLiveSpecification=table["TimeToLiveSpecification"])
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/hookbot/webhook-secret", Value=SECRET, Type="SecureString")
    ssm.put_parameter(Name="/hookbot/github-token", Value="ghp_from_ssm", Type="SecureString")
    refs: dict[str, Any] = {name: parameter.get("Default") for name, parameter in template["Parameters"].items()} | {
        "GitHubApiUrl": github_url,
        "DeliveryTopic": chain.topic_arn,
        "DedupeTable": "hookbot-dedupe",
        "PayloadBucket": "hookbot-payloads",
        "AWS::NoValue": None,
    }

    ingress_env = environment(template, "IngressFunction", refs) | {"HOOKBOT_STATE_DIR": str(tmp_path / "ingress")}
    ingress = LambdaEntry(Runtime.build(load_settings(ingress_env)))
    headers = github_headers(ISSUE_OPENED, "issues", delivery_id="stack-1")
    answer = await asyncio.to_thread(ingress, function_url_event(ISSUE_OPENED, headers, encode=True), None)
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["status"] == "relayed"
    forged = function_url_event(ISSUE_OPENED, github_headers(ISSUE_OPENED, "issues", secret="wrong"))
    assert (await asyncio.to_thread(ingress, forged, None))["statusCode"] == 401
    (envelope,) = await asyncio.to_thread(chain.received)
    assert fake.requests == []

    worker_env = environment(template, "WorkerFunction", refs) | {"HOOKBOT_STATE_DIR": str(tmp_path / "worker")}
    worker_settings = load_settings(worker_env)
    assert worker_settings.github.token == "ghp_from_ssm" and worker_settings.sns.topic_arns == (chain.topic_arn,)
    worker = LambdaEntry(Runtime.build(worker_settings))
    result = await asyncio.to_thread(worker, sns_event(envelope), None)
    assert result == {"deliveries": [{"delivery": "stack-1", "event": "issues.opened", "status": "ok"}]}
    assert [path for path, _ in fake.posted_comments()] == ["/repos/Codertocat/Hello-World/issues/1/comments"]

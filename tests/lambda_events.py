"""Lambda event shapes as AWS sends them, built around a payload: SNS records, Function URL, API Gateway v1."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from tests.sns_signing import TOPIC


def lambda_sns_object(document: dict[str, Any]) -> dict[str, Any]:
    """An SNS HTTP-endpoint message respelled as the ``Sns`` object of a Lambda record."""
    sns = {k: v for k, v in document.items() if k not in ("SigningCertURL", "UnsubscribeURL")}
    sns["SigningCertUrl"] = document["SigningCertURL"]
    sns["UnsubscribeUrl"] = document.get("UnsubscribeURL", "")
    sns.setdefault("Subject", None)
    sns.setdefault("MessageAttributes", {})
    return sns


def sns_event(*documents: dict[str, Any]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": f"{TOPIC}:{uuid.uuid4()}",
                "Sns": lambda_sns_object(document) if "SigningCertURL" in document else document,
            }
            for document in documents
        ]
    }


def function_url_event(body: bytes, headers: dict[str, str], *, encode: bool = False, method: str = "POST") -> Any:
    """Payload format 2.0 (Function URLs, HTTP APIs): lower-case header names, optionally base64 body."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {name.lower(): value for name, value in headers.items()},
        "requestContext": {"http": {"method": method, "path": "/", "sourceIp": "192.30.252.1"}, "requestId": "r"},
        "body": base64.b64encode(body).decode() if encode else body.decode(),
        "isBase64Encoded": encode,
    }


def api_gateway_v1_event(body: bytes, headers: dict[str, str]) -> Any:
    """Payload format 1.0 (REST APIs): header names in the client's own case."""
    return {
        "resource": "/webhook",
        "path": "/webhook",
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "requestContext": {"resourcePath": "/webhook", "httpMethod": "POST", "stage": "prod"},
        "body": body.decode(),
        "isBase64Encoded": False,
    }

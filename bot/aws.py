"""boto3 clients made on first use.

boto3 costs a noticeable share of a Lambda cold start, so nothing imports it until a handler asks for a client.
Endpoints come from boto3's own standard variables (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>``), which
is how tests point it at moto.
"""

from __future__ import annotations

import threading
from typing import Any


class AwsClients:
    """A lazily filled cache of boto3 clients, safe to share between threads (boto3 clients are)."""

    def __init__(self, region: str | None = None) -> None:
        self._region = region
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                import boto3  # lazy on purpose: see the module docstring

                self._clients[service] = boto3.session.Session().client(service, region_name=self._region)
            return self._clients[service]

"""SNS edges: certificate hosts of every AWS partition with SNS, and certificate fetches an unsigned message cannot
multiply (limited per host, failures remembered for a minute)."""

from __future__ import annotations

import pytest

from bot.delivery import Refusal
from bot.sns import SnsVerifier
from bot.sns_fetch import FETCHES_PER_HOST, SnsFetcher
from tests.sns_signing import TOPIC, CountingGet

PEM = "/SimpleNotificationService-0123456789abcdef.pem"


@pytest.mark.parametrize(
    ("host", "trusted"),
    [
        ("sns.us-east-1.amazonaws.com", True),
        ("sns.us-gov-west-1.amazonaws.com", True),
        ("sns.cn-north-1.amazonaws.com.cn", True),
        ("sns.cn-northwest-1.amazonaws.com.cn", True),
        ("sns.eusc-de-east-1.amazonaws.eu", True),  # the AWS European Sovereign Cloud
        ("sns.eusc-de-east-1.amazonaws.com", False),  # each partition at its own domain only
        ("sns.us-east-1.amazonaws.eu", False),
        ("sns.us-east-1.amazonaws.com.cn", False),
        ("sns.cn-north-1.amazonaws.com", False),
        ("sns.eusc-de-east-1.amazonaws.eu.evil.com", False),
        ("sns.amazonaws.eu", False),
    ],
)
def test_certificate_hosts_of_every_partition(host: str, trusted: bool) -> None:
    assert SnsVerifier.build([TOPIC]).is_trusted_cert_url(f"https://{host}{PEM}") is trusted


async def test_fetches_are_limited_per_host() -> None:
    """Unsigned messages naming ever new certificate URLs at one trusted host: a few fetches, then 503s."""
    now = [0.0]
    get = CountingGet()
    fetcher = SnsFetcher(get, clock=lambda: now[0])
    statuses = []
    for index in range(3 * FETCHES_PER_HOST):
        with pytest.raises(Refusal) as caught:
            await fetcher.certificate(f"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-{index:04x}.pem")
        statuses.append(caught.value.status)
    assert len(get.fetched) == FETCHES_PER_HOST
    assert statuses.count(503) == len(statuses)
    # Another host has its own allowance, and the first one's comes back after the window.
    with pytest.raises(Refusal):
        await fetcher.certificate(f"https://sns.eu-west-1.amazonaws.com{PEM}")
    assert len(get.fetched) == FETCHES_PER_HOST + 1
    now[0] = 61.0
    with pytest.raises(Refusal):
        await fetcher.certificate("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-ffff.pem")
    assert len(get.fetched) == FETCHES_PER_HOST + 2

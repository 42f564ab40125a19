"""A transaction POSTed to a FHIR server: which answers are delivered, which are tried again
and which fail for good (a real HTTP server on a free port)."""

from __future__ import annotations

import json
import socket

import pytest

from api.delivery.destinations import FhirDestination
from api.delivery.failures import DeliveryFailed
from api.delivery.fhir import post_transaction
from api.reports.fhir_example import example_bundle
from tests.api.fhir_server import FhirServer


def _bundle() -> bytes:
    return json.dumps(example_bundle(transaction=True)).encode()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _destination(url: str) -> FhirDestination:
    return FhirDestination(name="ehr", kind="fhir", url=url, timeout_s=5)


def test_a_transaction_the_server_takes_is_delivered() -> None:
    with FhirServer() as server:
        post_transaction(_destination(server.url), _bundle())
    [received] = server.received
    assert received.type == "transaction" and len(received.entry) == 4


@pytest.mark.parametrize(("status", "permanent"), [
    (400, True), (401, False), (403, False), (404, False), (422, True),
    (408, False), (429, False), (500, False), (503, False)])
def test_an_error_answer_is_retried_unless_the_request_itself_is_wrong(
        status: int, permanent: bool) -> None:
    with FhirServer() as server:
        server.statuses = [status]
        with pytest.raises(DeliveryFailed) as failed:
            post_transaction(_destination(server.url), _bundle())
    assert failed.value.permanent is permanent
    assert f"HTTP {status}" in failed.value.detail


def test_a_server_that_is_not_there_is_tried_again() -> None:
    with pytest.raises(DeliveryFailed) as failed:
        post_transaction(_destination(f"http://127.0.0.1:{_free_port()}/fhir"), _bundle())
    assert not failed.value.permanent and "ConnectError" in failed.value.detail

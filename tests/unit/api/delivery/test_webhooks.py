"""Webhooks without a server: the signature against the Standard Webhooks test vector, the
allow-list's rules, the webhooks file's errors, the event's shape."""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path

import pytest

from api.delivery.allow_list import AllowList
from api.delivery.webhook_clients import load_webhooks
from api.delivery.webhook_events import event_body, event_document, signed_headers
from api.schemas.submission import SubmissionMetadata
from api.study.jobs import Job, JobError, JobState
from api.study.webhooks import Webhook, WebhookState

# The specification's published vector (standard-webhooks, spec/standard-webhooks.md).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_signature_is_the_specifications_test_vector(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VECTOR_SECRET", VECTOR_SECRET)
    path = tmp_path / "w.toml"
    path.write_text('[[client]]\nclient = "ris"\nsecret_env = "VECTOR_SECRET"\n')
    signer = load_webhooks(path, "").signer("ris")
    assert signer is not None
    headers = signed_headers(signer, "msg_p5jXN8AQM9LWM0D4loKWxJek", b'{"test": 2432232314}',
                             1614265330.9)
    assert headers == {"content-type": "application/json",
                       "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
                       "webhook-timestamp": "1614265330", "webhook-signature": VECTOR_SIGNATURE}


@pytest.mark.parametrize(("allow", "host", "address", "permitted"), [
    ("ris.example.org", "ris.example.org", "93.184.216.34", True),
    ("ris.example.org", "RIS.example.org.", "93.184.216.34", True),
    ("ris.example.org", "ris.example.org", "10.0.0.5", False),  # a listed name, private now
    ("ris.example.org", "ris.example.org", "127.0.0.1", False),
    ("ris.example.org", "ris.example.org", "::ffff:127.0.0.1", False),
    ("ris.example.org", "ris.example.org", "169.254.169.254", False),
    ("ris.example.org", "ris.example.org", "fe80::1", False),
    ("ris.example.org,10.0.0.0/8", "ris.example.org", "10.0.0.5", True),  # its network listed
    ("*.example.org", "a.example.org", "93.184.216.34", True),
    ("*.example.org", "example.org", "93.184.216.34", False),
    ("*.example.org", "badexample.org", "93.184.216.34", False),
    ("8.8.8.0/24", "anything.example", "8.8.8.8", True),
    ("8.8.8.0/24", "anything.example", "8.8.4.4", False),  # public, but the name is not listed
    ("8.8.8.0/24", "localhost", "127.0.0.1", False),
    ("::1/128", "localhost", "::1", True),
])
def test_the_address_a_name_resolves_to_decides_at_send_time(
        allow: str, host: str, address: str, permitted: bool) -> None:
    assert AllowList.parse(allow).permits_address(host, ipaddress.ip_address(address)) \
        is permitted


def test_at_submission_a_name_passes_only_when_listed_or_networks_decide_later() -> None:
    names = AllowList.parse("ris.example.org, *.hospital.example")
    networks = AllowList.parse("10.0.0.0/8")
    assert [names.permits_host(h) for h in ("ris.example.org", "x.hospital.example",
                                            "other.example.org", "10.1.1.1")] == \
        [True, True, False, False]
    assert [networks.permits_host(h) for h in ("any.name", "10.1.1.1", "[::1]", "11.0.0.1")] \
        == [True, True, False, False]
    assert not AllowList.parse(" , ")


@pytest.mark.parametrize("entry", ["http://ris.example.org", "ris_example.org", "*", "a..b"])
def test_a_wrong_allow_list_entry_is_named(entry: str) -> None:
    with pytest.raises(ValueError, match="neither a host name"):
        AllowList.parse(f"ris.example.org,{entry}")


GOOD = "whsec_" + base64.b64encode(b"k" * 32).decode()


@pytest.mark.parametrize(("text", "secret", "message"), [
    ('[[client]]\nclient = "ris"\nsecret_env = "HOOK_SECRET"\n', None,
     "environment variable HOOK_SECRET is not set"),
    ('[[client]]\nclient = "ris"\nsecret_env = "HOOK_SECRET"\n', "c2VjcmV0",
     "must hold whsec_"),
    ('[[client]]\nclient = "ris"\nsecret_env = "HOOK_SECRET"\n', "whsec_!!!", "not base64"),
    ('[[client]]\nclient = "ris"\nsecret_env = "HOOK_SECRET"\n', "whsec_c2hvcnQ=",
     "24 to 64 bytes"),
    ('[[client]]\nclient = "ris"\nsecret_env = "HOOK_SECRET"\nsecret = "x"\n', GOOD,
     "client.0.secret"),
    ('[[client]]\nclient = "ris"\nsecret_env = "HOOK_SECRET"\nurl = "ftp://x"\n', GOOD,
     "client.0.url"),
    ('[[client]]\nclient = "ris"\nsecret_env = "HOOK_SECRET"\n' * 2, GOOD, "one \\[\\[client"),
    ('give_up_s = 0\n', GOOD, "give_up_s"),
    ('[[client]\n', GOOD, "not TOML"),
    ('ca_file = "/nonexistent/ca.pem"\n', GOOD, "ca_file: No such file"),
    ('[[client]]\nclient = "ris"\nsecret_env = "HOOK_SECRET"\nurl = "https://x.example/"\n',
     GOOD, "client ris: the callback URL's host is not on the allow-list"),
])
def test_a_wrong_webhooks_file_is_refused_in_one_line_saying_what_is_wrong(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, secret: str | None,
        message: str) -> None:
    if secret is None:
        monkeypatch.delenv("HOOK_SECRET", raising=False)
    else:
        monkeypatch.setenv("HOOK_SECRET", secret)
    path = tmp_path / "webhooks.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as refusal:
        load_webhooks(path, "ris.example.org")
    assert "\n" not in str(refusal.value)
    assert secret is None or len(secret) < 8 or secret not in str(refusal.value)


def _event(event_type: str) -> Webhook:
    return Webhook("j1", "msg_1", event_type, "https://ris.example.org/e", WebhookState.PENDING,  # type: ignore[arg-type]
                   0, 1796394031.25, 1796394031.25, None, None, None, None)


def test_a_failed_jobs_event_names_its_problem_and_only_the_job_link() -> None:
    metadata = SubmissionMetadata(accession_number="A1",
                                  callback_url="https://ris.example.org/e")
    job = Job("j1", JobState.FAILED, 1.0, 2.0, 0, 0, 1, JobError(
        "urn:bonemets:problem:model-error", "Model error", 502, "the model answered garbage"),
        owner="ris", metadata=metadata)
    document = event_document(_event("study.failed"), job, None, "https://gw.example/")
    assert document == {
        "type": "study.failed", "timestamp": "2026-12-04T14:20:31.250000Z",
        "data": {"id": "j1", "state": "failed",
                 "problem": {"type": "urn:bonemets:problem:model-error",
                             "title": "Model error", "status": 502},
                 "links": {"job": "https://gw.example/v1/studies/j1"},
                 "metadata": {"accession_number": "A1"}},
    }
    assert event_body(document).startswith(b'{"type":"study.failed","timestamp":"2026-12-04')


def test_a_study_without_lesions_links_no_segmentation() -> None:
    job = Job("j2", JobState.SUCCEEDED, 1.0, 2.0, 4, 4, 1, None)
    data = event_document(_event("study.succeeded"), job, 0)["data"]
    assert data["lesion_count"] == 0 and set(data["links"]) == {"job", "sr", "fhir"}


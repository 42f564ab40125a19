"""The delivery's backoff, and how a Store Instances Response is read."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from api.delivery.failures import DeliveryFailed
from api.delivery.stow import _outcome
from api.delivery.worker import backoff_s


def test_the_backoff_doubles_from_the_first_wait_up_to_the_longest() -> None:
    waits = [backoff_s(n, 10, 600) for n in range(1, 10)]
    bounds = [10, 20, 40, 80, 160, 320, 600, 600, 600]
    assert all(0.8 * b <= w <= b for w, b in zip(waits, bounds, strict=True))


def _response(failed: list[int] = (), warnings: list[int] = ()) -> Dataset:  # type: ignore[assignment]
    answer = Dataset()
    answer.FailedSOPSequence = []
    for code in failed:
        item = Dataset()
        item.FailureReason = code
        answer.FailedSOPSequence.append(item)
    answer.ReferencedSOPSequence = []
    for code in warnings:
        item = Dataset()
        item.WarningReason = code
        answer.ReferencedSOPSequence.append(item)
    return answer


def test_a_response_without_failures_is_delivered_and_warnings_are_noted() -> None:
    assert _outcome(_response(), "pacs", 2) is None
    assert _outcome(_response(warnings=[0xB000]), "pacs", 2) == "stored with warning 0xB000"


@pytest.mark.parametrize(("codes", "permanent"), [
    ([0xA700], False),  # out of resources: worth a retry
    ([0xC122, 0xA700], True),  # one refused as sent: sending it again cannot help
    ([0x0122], True),
])
def test_failed_instances_fail_the_attempt_for_now_or_for_good(codes: list[int],
                                                                permanent: bool) -> None:
    with pytest.raises(DeliveryFailed) as failed:
        _outcome(_response(failed=codes), "pacs", 2)
    assert failed.value.permanent is permanent
    assert f"refused {len(codes)} of 2 instances" in failed.value.detail

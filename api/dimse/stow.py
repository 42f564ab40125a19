"""STOW-RS (PS3.18 10.5): instances in through the same intake as uploads, and the Store
Instances Response, in DICOM JSON (PS3.18 F.2), that tells which were stored and which failed.

Status codes follow PS3.18 10.5.3 (Table 10.5.3-1): 200 every instance stored, 202 some
failed but the study was queued, 409 none stored (nothing queued).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.dicom.series import CTSeries
from api.dimse.instances import Outcome, outcomes
from api.errors import InvalidUpload
from api.study import intake
from api.study.services import Services

RETRIEVE_URL = "00081190"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
FAILURE_REASON = "00081197"
REFERENCED_SOP_CLASS_UID = "00081150"
REFERENCED_SOP_INSTANCE_UID = "00081155"


@dataclass(frozen=True)
class StowReceipt:
    """What a STOW-RS request left: the job (None when nothing was queued), every instance's
    outcome, and the error that refused the whole study, if one did."""

    job_id: str | None
    instances: tuple[Outcome, ...]
    refusal: InvalidUpload | None = None

    @property
    def status(self) -> int:
        if self.job_id is None:
            return 409
        return 202 if any(o.failure is not None for o in self.instances) else 200


async def receive_instances(write_parts: intake.PartWriter, services: Services,
                            owner: str, priority: int = 0) -> StowReceipt:
    """Receive a STOW-RS body as one study of ``owner``. A body that cannot be read raises
    its InvalidUpload (a problem answer); instances that cannot be read fail one by one, and
    when none can be read the receipt has no job."""
    found: list[Outcome] = []

    async def inspect(files: Sequence[Path], series: CTSeries | None,
                      refusal: BaseException | None) -> None:
        found[:] = await asyncio.to_thread(outcomes, files, series, refusal,
                                           services.settings.max_image_pixels)

    try:
        received = await intake.receive(write_parts, services, owner, expand_zips=False,
                                        inspect=inspect, priority=priority,
                                        entrance="stow")
    except InvalidUpload as exc:
        if not found:
            raise  # the body itself, not its instances
        return StowReceipt(None, tuple(found), exc)
    return StowReceipt(received.job_id, tuple(found))


def store_response(receipt: StowReceipt, job_url: str | None) -> dict[str, Any]:
    """The Store Instances Response module (PS3.18 Table 10.5.3-2) in DICOM JSON; the job's
    URL, where there is a job, as its Retrieve URL (0008,1190)."""
    body: dict[str, Any] = {}
    if job_url is not None:
        body[RETRIEVE_URL] = {"vr": "UR", "Value": [job_url]}
    stored = [_reference(o) for o in receipt.instances if o.failure is None]
    failed = [{**_reference(o), FAILURE_REASON: {"vr": "US", "Value": [o.failure]}}
              for o in receipt.instances if o.failure is not None]
    if failed:
        body[FAILED_SOP_SEQUENCE] = {"vr": "SQ", "Value": failed}
    if stored:
        body[REFERENCED_SOP_SEQUENCE] = {"vr": "SQ", "Value": stored}
    return body


def _reference(outcome: Outcome) -> dict[str, Any]:
    return {REFERENCED_SOP_CLASS_UID: _uid(outcome.sop_class_uid),
            REFERENCED_SOP_INSTANCE_UID: _uid(outcome.sop_instance_uid)}


def _uid(value: str) -> dict[str, Any]:
    # An unreadable part has no UID: the attribute is present and empty (PS3.18 F.2.5).
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}

"""UIDs of a job's SEG and SR, derived from the job id (PS3.5 B.2, root 2.25).

Deterministic, so that the SR references the SEG's instance without building it, and a
rebuilt object keeps the UIDs a PACS already holds.
"""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("5e0b2c8a-6f0e-4c4b-9a57-1b0e3d7c2f41")


def report_uid(job_id: str, part: str) -> str:
    """The UID named ``part`` (``seg``, ``seg-series``, ``sr``, ...) of job ``job_id``."""
    return f"2.25.{uuid.uuid5(_NAMESPACE, f'{job_id}/{part}').int}"


def tracking_uid(job_id: str, lesion_id: int) -> str:
    """The tracking UID of one lesion, the same in the SEG and in the SR."""
    return report_uid(job_id, f"lesion-{lesion_id}")


def resource_urn(job_id: str, part: str) -> str:
    """The urn:uuid fullUrl of the FHIR resource named ``part`` in job ``job_id``'s Bundle:
    the same study gives the same Bundle, and a transaction's entries reference each other
    by it before the server names them."""
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{job_id}/fhir/{part}')}"

"""Who a phantom study says made it, its UIDs and its plainly fake patient.

UIDs derive from the seed, so a study written twice is the same study. The CT series and
the SEG both name these; neither module owns them.
"""

from __future__ import annotations

from pydicom.uid import UID, generate_uid

MANUFACTURER = "bonemets-phantom"
SOFTWARE_VERSION = "bonemets-phantom 1"
# Every date and time a phantom study carries: no clock, so equal seeds give equal bytes.
DATE = "20240101"
TIME = "120000"


def study_uid(seed: int, what: str) -> UID:
    """Deterministic UID for part ``what`` of the phantom study made from ``seed``."""
    return generate_uid(entropy_srcs=["bonemets-phantom", str(seed), what])


def patient_name(seed: int) -> str:
    """Plainly fake patient name."""
    return f"PHANTOM^{seed % 10000:04d}"


def patient_id(seed: int) -> str:
    """Plainly fake patient ID."""
    return f"PHANTOM-{seed:04d}"

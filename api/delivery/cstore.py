"""SEG and SR to a PACS by DIMSE C-STORE (PS3.4 Annex B), through pynetdicom."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association

from api.delivery.destinations import CStoreDestination
from api.delivery.failures import DeliveryFailed

SUCCESS = 0x0000
# PS3.4 B.2.3: coercion of data elements, elements discarded, data set does not match the SOP
# class: stored, with a warning.
WARNINGS = {0xB000, 0xB006, 0xB007}
# Refused as sent, so never worth another try: SOP class not supported (0x0122), data set
# does not match the SOP class (0xA9xx). Out of resources (0xA7xx) and "cannot understand"
# (0xCxxx, which some PACSs answer when their disk is full) are tried again.
REFUSED_AS_SENT = {0x0122}


def c_store(destination: CStoreDestination, datasets: list[Dataset], calling_ae: str) -> str | None:
    """Send ``datasets`` to ``destination`` in one association, as ``calling_ae``; a note when
    it stored them with warnings. DeliveryFailed when one was not stored."""
    where = f"{destination.ae_title}@{destination.host}:{destination.port}"
    assoc = _associate(destination, datasets, calling_ae, where)
    warnings: set[int] = set()
    try:
        for dataset in datasets:
            status = _store(assoc, dataset, where)
            if status in WARNINGS:
                warnings.add(status)
    finally:
        if assoc.is_established:
            assoc.release()
    if warnings:
        return "stored with warning " + ", ".join(f"0x{code:04X}" for code in sorted(warnings))
    return None


def _associate(destination: CStoreDestination, datasets: list[Dataset], calling_ae: str,
               where: str) -> Association:
    ae = AE(ae_title=calling_ae)
    for timeout in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
        setattr(ae, timeout, destination.timeout_s)
    for sop_class in dict.fromkeys(UID(d.SOPClassUID) for d in datasets):
        syntaxes = {UID(d.file_meta.TransferSyntaxUID) for d in datasets
                    if d.SOPClassUID == sop_class}
        ae.add_requested_context(sop_class, [*sorted(syntaxes), ExplicitVRLittleEndian,
                                             ImplicitVRLittleEndian])
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if assoc.is_rejected:
        # Rejections (an unknown calling AE, say) are fixed on the PACS's side: tried again.
        answer = assoc.acceptor.primitive
        why = "" if answer is None else f" ({answer.result_str}: {answer.reason_str})"
        raise DeliveryFailed(f"C-STORE association rejected by {where}{why}")
    if not assoc.is_established:
        raise DeliveryFailed(f"C-STORE association with {where} failed (aborted or no answer)")
    return assoc


def _store(assoc: Association, dataset: Dataset, where: str) -> int:
    """The status of one C-STORE; DeliveryFailed unless success or a warning."""
    name = UID(dataset.SOPClassUID).name
    try:
        answer = assoc.send_c_store(dataset)
    except ValueError:  # no accepted presentation context for its SOP class
        raise DeliveryFailed(f"{where} does not accept {name} (no presentation context)",
                             permanent=True) from None
    if "Status" not in answer:
        raise DeliveryFailed(f"C-STORE of a {name} to {where} got no answer (aborted or timed"
                             " out)")
    status = int(answer.Status)
    if status == SUCCESS or status in WARNINGS:
        return status
    permanent = status in REFUSED_AS_SENT or status & 0xFF00 == 0xA900
    raise DeliveryFailed(f"{where} refused a {name} with status 0x{status:04X}",
                         permanent=permanent)

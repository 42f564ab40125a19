"""The DICOM listener: a pynetdicom AE in a thread of the gateway, answering C-ECHO and
C-STORE, writing each instance to disk as it arrives.

Every storage SOP class is negotiated, in the transfer syntaxes the reader decodes, so that
an instance bonemets does not read (an MR, an SR) gets a failure status of its own (0x0122)
rather than a rejected presentation context that fails the whole association. Each CT
instance passes the upload's header pass at once: one it would refuse fails its C-STORE
with the code of :mod:`api.dimse.instances`. A calling AE title not on the list is rejected
at association (PS3.8 A-ASSOCIATE-RJ, reason "calling AE title not recognised").
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import AllTransferSyntaxes
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from api.config import Settings
from api.dicom.headers import read_header
from api.dicom.pixels import decoder_problem
from api.dicom.screening import CT_STORAGE_CLASSES
from api.dimse.gathering import SAFE_NAME, StudyGatherer, StudySubmitter
from api.dimse.instances import SOP_CLASS_NOT_SUPPORTED, failure_code
from api.errors import InvalidUpload

log = logging.getLogger(__name__)

SUCCESS = 0x0000
CANNOT_UNDERSTAND = 0xC000
OUT_OF_RESOURCES = 0xA700
INSTANCE_NAME = re.compile(r"[0-9.]{1,64}")


def decodable_transfer_syntaxes() -> list[str]:
    """The transfer syntaxes whose pixels the installed plugins decode (PS3.5 10)."""
    return [str(uid) for uid in AllTransferSyntaxes if decoder_problem(uid) is None]


def owner_of(settings: Settings, calling_ae: str) -> str:
    """The client a sender's studies belong to: ``dicom_client``, ``{calling_ae}`` filled."""
    return settings.dicom_client.replace("{calling_ae}", SAFE_NAME.sub("_", calling_ae))[:64]


class DicomListener:
    """C-ECHO and C-STORE on ``settings.host:settings.dicom_port`` as ``settings.ae_title``;
    studies handed to ``submit`` once quiet for ``settings.dicom_quiet_s``."""

    def __init__(self, settings: Settings, submit: StudySubmitter) -> None:
        if settings.dicom_port is None:
            raise ValueError("the DICOM listener needs a port (BONEMETS_DICOM_PORT)")
        self.settings = settings
        self.gatherer = StudyGatherer(settings.data_dir / "dimse" / "incoming",
                                      settings.dicom_quiet_s, submit)
        self._server: ThreadedAssociationServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    def start(self) -> None:
        ae = AE(ae_title=self.settings.ae_title)
        ae.require_called_aet = True  # an association meant for another AE is refused
        allowed = sorted(self.settings.dicom_calling_ae_titles)
        ae.require_calling_aet = allowed  # empty: any caller
        if not allowed and self.settings.host not in ("127.0.0.1", "::1", "localhost"):
            # An AE title is a name, not a credential; still, the list keeps strays out.
            log.warning("the DICOM listener takes studies from any calling AE title; "
                        "list the PACS's in BONEMETS_DICOM_CALLING_AES")
        syntaxes = decodable_transfer_syntaxes()
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(str(context.abstract_syntax), syntaxes)
        ae.add_supported_context(Verification)
        self.gatherer.start()
        self._server = ae.start_server(
            (self.settings.host, self.settings.dicom_port or 0), block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._on_store), (evt.EVT_C_ECHO, _on_echo)],
        )
        log.info("DICOM listener %s on %s:%d", self.settings.ae_title, self.settings.host,
                 self.port)

    def stop(self) -> None:
        """Close the port and end open associations; gathered studies stay on disk."""
        if self._server is not None:
            self._server.shutdown()  # closes the port
            # A sender cut off here sends again; what it stored so far waits on disk.
            for association in self._server.active_associations:
                association.abort()
            self._server = None
        self.gatherer.stop()
        log.info("DICOM listener stopped")

    def _on_store(self, event: Any) -> int | Dataset:
        sop_class = str(event.request.AffectedSOPClassUID)
        if sop_class not in CT_STORAGE_CLASSES:
            return _failure(SOP_CLASS_NOT_SUPPORTED, "only CT images are read")
        instance = str(event.request.AffectedSOPInstanceUID)
        try:
            study_uid = str(event.dataset.get("StudyInstanceUID", ""))
        except Exception:  # noqa: BLE001 - a data set that does not decode
            return _failure(CANNOT_UNDERSTAND, "the data set cannot be decoded")
        owner = owner_of(self.settings, event.assoc.requestor.ae_title)
        # PS3.7 9.1.1.1.2: 0001H is HIGH; the sending modality or PACS router says "stat".
        folder = self.gatherer.begin(owner, study_uid, urgent=event.request.Priority == 1)
        try:
            return self._write(event, folder, instance)
        finally:
            self.gatherer.end(owner, study_uid)

    def _write(self, event: Any, folder: Path, instance: str) -> int | Dataset:
        name = instance if INSTANCE_NAME.fullmatch(instance) else "instance"
        path = folder / f"{name}-{event.message_id}.dcm"
        try:
            path.write_bytes(event.encoded_dataset(include_meta=True))
        except OSError:
            log.exception("a C-STORE instance could not be written")
            return _failure(OUT_OF_RESOURCES, "the instance could not be written")
        try:
            read_header(path, self.settings.max_image_pixels)
        except InvalidUpload as exc:
            path.unlink(missing_ok=True)
            return _failure(failure_code(exc), exc.detail)
        return SUCCESS


def _on_echo(event: Any) -> int:
    return SUCCESS


def _failure(status: int, comment: str) -> Dataset:
    """A failure status with its Error Comment (PS3.7 C.4.2: 64 characters at most)."""
    answer = Dataset()
    answer.Status = status
    answer.ErrorComment = comment.encode("ascii", "replace").decode()[:64]
    return answer

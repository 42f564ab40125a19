"""A DICOM storage SCP (pynetdicom) for delivery tests: a PACS's DIMSE port that keeps what it
is sent and answers the status a test sets; it can be stopped and started on the same port."""

from __future__ import annotations

import threading
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]


class StorageSCP:
    """Accepts every storage SOP class from any calling AE; ``status`` is what each C-STORE
    gets (0x0000 by default); ``received`` holds the stored datasets, in order."""

    def __init__(self, port: int, ae_title: str = "PACS") -> None:
        self.port = port
        self.ae_title = ae_title
        self.status = 0x0000
        self.received: list[Dataset] = []
        self.calling: list[str] = []
        self._lock = threading.Lock()
        self._server: Any = None

    def __enter__(self) -> StorageSCP:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        ae = AE(ae_title=self.ae_title)
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context(Verification)
        self._server = ae.start_server(("127.0.0.1", self.port), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self._store)])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _store(self, event: Any) -> int:
        if self.status == 0x0000 or self.status & 0xF000 == 0xB000:
            dataset = event.dataset
            dataset.file_meta = event.file_meta
            with self._lock:
                self.received.append(dataset)
                self.calling.append(event.assoc.requestor.ae_title)
        return self.status

    def sop_instance_uids(self) -> list[str]:
        with self._lock:
            return [str(d.SOPInstanceUID) for d in self.received]

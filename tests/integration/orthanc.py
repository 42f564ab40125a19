"""A real Orthanc (Debian's ``orthanc`` with ``orthanc-dicomweb``) as the hospital PACS in tests.

:class:`Orthanc` writes its configuration into a folder of its own (storage, index, log),
on free ports chosen once, so that ``stop()`` then ``start()`` keeps the ports and the
stored studies. Its REST and DICOMweb API need HTTP Basic auth with the one user given.
Orthanc 1.10.1 has no bind-address setting: it listens on all interfaces, and refuses HTTP
requests that do not come from localhost (``RemoteAccessAllowed`` false).

Tests skip with :data:`ORTHANC_MISSING` as the reason when it is not installed
(:func:`require_orthanc`). A round trip, in short::

    with running_orthanc(tmp_path / "pacs", ae_title="PACS") as pacs:
        pacs.add_modality("bonemets", Modality("BONEMETS", dicom_port))
        pacs.store_to_modality("bonemets", [pacs.find_study(study_uid)])
        # bonemets STOWs to pacs.dicomweb_url + "/studies" with auth=pacs.auth
        pacs.qido_until(f"studies/{study_uid}/instances", {"Modality": "SEG"}, count=1)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest

from api.tritonserver.process import die_with_parent, free_ports

ORTHANC_BINARY: str | None = shutil.which("Orthanc") or shutil.which(
    "Orthanc", path="/usr/sbin:/usr/local/sbin")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
MISSING_REASON = (
    "Orthanc (Debian's orthanc, orthanc-dicomweb) is not installed: make system-packages")
ORTHANC_MISSING: str | None = (
    None if ORTHANC_BINARY is not None and DICOMWEB_PLUGIN.is_file() else MISSING_REASON)


def require_orthanc() -> None:
    """Skip the calling test when Orthanc or its DICOMweb plugin is not installed."""
    if ORTHANC_MISSING is not None:
        pytest.skip(ORTHANC_MISSING)


class OrthancError(RuntimeError):
    """Orthanc did not start, or answered a request with an error."""


@dataclass(frozen=True)
class Modality:
    """A DICOM peer Orthanc can send to (its ``DicomModalities`` entry)."""

    ae_title: str
    port: int
    host: str = "127.0.0.1"

    def config(self) -> dict[str, Any]:
        return {"AET": self.ae_title, "Host": self.host, "Port": self.port}


@dataclass(frozen=True)
class DicomWebServer:
    """A DICOMweb peer Orthanc's plugin can STOW to (its ``DicomWeb.Servers`` entry).

    ``headers`` are sent with every request to it (the plugin's ``HttpHeaders``), e.g.
    ``{"X-API-Key": key}`` or ``{"Authorization": "Bearer ..."}``. With ``chunked`` (the
    plugin's default) a STOW-RS body comes with ``Transfer-Encoding: chunked``, without it
    with a Content-Length.
    """

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    chunked: bool = True

    def config(self) -> dict[str, Any]:
        return {"Url": self.url, "HttpHeaders": dict(self.headers),
                "ChunkedTransfers": self.chunked}


class Orthanc:
    """One Orthanc server in ``folder``; a context manager that always stops it."""

    def __init__(self, folder: Path, *, ae_title: str = "ORTHANC", username: str = "pacs",
                 password: str = "pacs-password",
                 modalities: Mapping[str, Modality] | None = None,
                 dicomweb_servers: Mapping[str, DicomWebServer] | None = None,
                 check_called_ae_title: bool = True, start_timeout_s: float = 30) -> None:
        self.folder = folder
        self.ae_title = ae_title
        self.username = username
        self.password = password
        self.modalities = dict(modalities or {})
        self.dicomweb_servers = dict(dicomweb_servers or {})
        self.check_called_ae_title = check_called_ae_title
        self.start_timeout_s = start_timeout_s
        # Orthanc 1.10.1 binds every interface, so the ports must be free on all of them.
        self.http_port, self.dicom_port = free_ports(2, "0.0.0.0")
        self.config_path = folder / "orthanc.json"
        self.log_path = folder / "orthanc.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb root, e.g. for STOW-RS: ``{dicomweb_url}/studies``."""
        return f"{self.url}/dicom-web"

    @property
    def auth(self) -> tuple[str, str]:
        return self.username, self.password

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def configuration(self) -> dict[str, Any]:
        """Orthanc's configuration, as written to ``config_path`` at each start."""
        return {
            "Name": f"bonemets-test-{self.ae_title}",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.ae_title,
            "DicomCheckCalledAet": self.check_called_ae_title,
            # Any calling AE may store and echo: the listed modalities are destinations.
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowEcho": True,
            "DicomCheckModalityHost": False,
            # Orthanc's defaults: a SEG or SR it would refuse must fail the test, not pass it.
            "UnknownSopClassAccepted": False,
            "DicomModalities": {name: m.config() for name, m in self.modalities.items()},
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.username: self.password},
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": False,
                "Servers": {name: s.config() for name, s in self.dicomweb_servers.items()},
            },
            # A peer that does not answer fails the test in seconds, not minutes.
            "DicomScuTimeout": 10,
            "HttpTimeout": 60,
            "SaveJobs": False,
            "StableAge": 2,
        }

    def start(self) -> Orthanc:
        """Start Orthanc and wait until its REST API answers; raises :class:`OrthancError`."""
        if ORTHANC_BINARY is None or ORTHANC_MISSING is not None:
            raise OrthancError(MISSING_REASON)
        if self.running:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.configuration(), indent=2))
        # The kernel's SIGTERM comes when the forking *thread* ends: only the main thread's
        # children may have it, or a start() from a timer thread would die with that thread.
        main = threading.current_thread() is threading.main_thread()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [ORTHANC_BINARY, str(self.config_path)], cwd=self.folder, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent if main else None)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise OrthancError(f"Orthanc exited with {self._process.returncode} at start; "
                                   f"its log ends:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/system", auth=self.auth, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise OrthancError(f"Orthanc not answering on {self.url} after "
                           f"{self.start_timeout_s:.0f} s; its log ends:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 15) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; does nothing when not running."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)

    def __enter__(self) -> Orthanc:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def add_modality(self, name: str, modality: Modality) -> None:
        """Add or replace a DICOM destination, now if running and at every later start."""
        self.modalities[name] = modality
        if self.running:
            self.request("PUT", f"/modalities/{name}", json=modality.config())

    def add_dicomweb_server(self, name: str, server: DicomWebServer) -> None:
        """Add or replace a DICOMweb destination, now if running and at every later start."""
        self.dicomweb_servers[name] = server
        if self.running:
            self.request("PUT", f"/dicom-web/servers/{name}", json=server.config())

    # REST API

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One authenticated request to Orthanc; raises :class:`OrthancError` unless 2xx."""
        response = httpx.request(method, f"{self.url}{path}", auth=self.auth,
                                 timeout=kwargs.pop("timeout", 60), **kwargs)
        if not response.is_success:
            # Orthanc's answer to a failed send says little; its log says which peer and why.
            log = f"\nits log ends:\n{self.log_tail(10)}" if response.status_code >= 500 else ""
            raise OrthancError(
                f"{method} {path}: {response.status_code} {response.text[:2000]}{log}")
        return response

    def upload(self, paths: Iterable[Path]) -> list[str]:
        """POST each file to /instances; Orthanc's instance ids, in order."""
        return [self.request("POST", "/instances", content=Path(p).read_bytes()).json()["ID"]
                for p in paths]

    def instances(self) -> list[str]:
        return list(self.request("GET", "/instances").json())

    def studies(self) -> list[str]:
        return list(self.request("GET", "/studies").json())

    def find_study(self, study_instance_uid: str) -> str | None:
        """Orthanc's id of the study with this Study Instance UID, if it has one."""
        found = self.request("POST", "/tools/lookup", content=study_instance_uid).json()
        return next((item["ID"] for item in found if item["Type"] == "Study"), None)

    def series_of(self, study_id: str) -> list[str]:
        return list(self.request("GET", f"/studies/{study_id}").json()["Series"])

    def instances_of(self, series_id: str) -> list[str]:
        return list(self.request("GET", f"/series/{series_id}").json()["Instances"])

    def instance_tags(self, instance_id: str) -> dict[str, Any]:
        """The instance's tags by keyword, values as strings (Orthanc's simplified tags)."""
        return dict(self.request("GET", f"/instances/{instance_id}/simplified-tags").json())

    def file(self, instance_id: str) -> bytes:
        """The instance's DICOM file, as stored."""
        return self.request("GET", f"/instances/{instance_id}/file").content

    def qido(self, path: str, params: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """QIDO-RS: ``GET /dicom-web/{path}``; the DICOM JSON answer (a list of datasets)."""
        response = self.request("GET", f"/dicom-web/{path.lstrip('/')}", params=params,
                                headers={"Accept": "application/dicom+json"})
        return list(response.json()) if response.content else []

    def qido_until(self, path: str, params: Mapping[str, str] | None = None, *, count: int,
                   timeout_s: float = 30) -> list[dict[str, Any]]:
        """:meth:`qido` again until it finds ``count`` datasets (what a sender stores may
        arrive later); fails with what it found when more or fewer are there at the end."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.qido(path, params)
            if len(found) == count or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(found) == count, f"QIDO-RS {path} {params}: {len(found)} found, not {count}"
        return found

    def stow(self, files: Iterable[bytes]) -> httpx.Response:
        """STOW-RS to Orthanc's own ``/dicom-web/studies``, as a sender would; not checked."""
        boundary = "bonemets-test-boundary"
        body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n"
                        + data + b"\r\n" for data in files) + f"--{boundary}--\r\n".encode()
        kind = f'multipart/related; type="application/dicom"; boundary={boundary}'
        return httpx.post(f"{self.dicomweb_url}/studies", content=body, auth=self.auth,
                          headers={"Content-Type": kind, "Accept": "application/dicom+json"},
                          timeout=60)

    def echo(self, modality: str) -> bool:
        """C-ECHO from Orthanc to one of its modalities: True when it answered."""
        try:
            self.request("POST", f"/modalities/{modality}/echo", json={"Timeout": 10})
        except OrthancError:
            return False
        return True

    def store_to_modality(self, modality: str, resource_ids: Iterable[str]) -> dict[str, Any]:
        """C-STORE the resources (any level) to ``modality``, synchronously; Orthanc's report
        (``InstancesCount``, ``FailedInstancesCount``, ...)."""
        body = {"Resources": list(resource_ids), "Synchronous": True}
        return dict(self.request("POST", f"/modalities/{modality}/store", json=body).json())

    def stow_to_server(self, server: str, resource_ids: Iterable[str]) -> dict[str, Any]:
        """STOW-RS the resources to the DICOMweb ``server``, synchronously; Orthanc's answer."""
        body = {"Resources": list(resource_ids), "Synchronous": True}
        return dict(self.request("POST", f"/dicom-web/servers/{server}/stow", json=body).json())


@contextmanager
def running_orthanc(folder: Path, **options: Any) -> Iterator[Orthanc]:
    """A started :class:`Orthanc` (``options`` as its constructor's), stopped on the way out;
    skips the test when Orthanc is not installed."""
    require_orthanc()
    with Orthanc(folder, **options) as orthanc:
        yield orthanc

"""The real-Orthanc fixture (tests/integration/orthanc.py) works: it stores, answers QIDO-RS,
refuses requests without the password, sends by C-STORE and by STOW-RS (with the server's
extra header) and keeps its ports and studies across a restart."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from tests.api.conftest import BuiltSeries, build_series
from tests.integration.orthanc import (
    DicomWebServer,
    Modality,
    Orthanc,
    OrthancError,
    require_orthanc,
    running_orthanc,
)
from tests.integration.orthanc_payloads import (
    dicom_bytes,
    multipart_parts,
    small_seg,
    small_sr,
    stow_answer,
)

pytestmark = pytest.mark.integration

API_KEY = "bm_test-key-for-orthanc"


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    with running_orthanc(tmp_path_factory.mktemp("orthanc"), ae_title="PACS_T") as server:
        yield server


@pytest.fixture
def uploaded(orthanc: Orthanc, tmp_path: Path) -> tuple[BuiltSeries, str]:
    """A 4-slice CT series stored in Orthanc; Orthanc's id of its study."""
    series = build_series(tmp_path / "series", slices=4, size=64)
    orthanc.upload(series.paths)
    study_id = orthanc.find_study(_uid(series, "StudyInstanceUID"))
    assert study_id is not None
    return series, study_id


def _uid(series: BuiltSeries, keyword: str) -> str:
    return str(pydicom.dcmread(series.paths[0], stop_before_pixels=True)[keyword].value)


def _sop_uids(series: BuiltSeries) -> set[str]:
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
            for p in series.paths}


def test_an_uploaded_series_is_found_by_qido_and_read_back_unchanged(
        orthanc: Orthanc, uploaded: tuple[BuiltSeries, str]) -> None:
    series, study_id = uploaded
    study_uid = _uid(series, "StudyInstanceUID")
    (study,) = orthanc.qido("studies", {"StudyInstanceUID": study_uid})
    assert study["0020000D"]["Value"] == [study_uid]
    assert study["00201208"]["Value"] == [4]  # NumberOfStudyRelatedInstances
    (found,) = orthanc.qido(f"studies/{study_uid}/series")
    assert found["0020000E"]["Value"] == [_uid(series, "SeriesInstanceUID")]
    assert orthanc.qido("studies", {"StudyInstanceUID": "1.2.3.4.5.6.7.8.9"}) == []
    (series_id,) = orthanc.series_of(study_id)
    instances = orthanc.instances_of(series_id)
    by_uid = {orthanc.instance_tags(i)["SOPInstanceUID"]: i for i in instances}
    assert set(by_uid) == _sop_uids(series)
    for path in series.paths:
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        assert orthanc.file(by_uid[uid]) == path.read_bytes()


def test_requests_without_the_password_are_refused(orthanc: Orthanc) -> None:
    assert httpx.get(f"{orthanc.url}/system").status_code == 401
    assert httpx.get(f"{orthanc.url}/system", auth=(orthanc.username, "wrong")).status_code == 401
    assert httpx.get(f"{orthanc.dicomweb_url}/studies").status_code == 401
    assert httpx.get(f"{orthanc.url}/system", auth=orthanc.auth).json()["DicomAet"] == "PACS_T"


def _echo(orthanc: Orthanc, called: str) -> int | None:
    """C-ECHO's status from Orthanc's DICOM port; None when the association is refused."""
    sender = AE(ae_title="BONEMETS")
    sender.add_requested_context(Verification)
    assoc = sender.associate("127.0.0.1", orthanc.dicom_port, ae_title=called)
    if not assoc.is_established:
        return None
    status = int(assoc.send_c_echo().Status)
    assoc.release()
    return status


def test_c_echo_to_orthanc_needs_its_ae_title(orthanc: Orthanc) -> None:
    assert _echo(orthanc, "PACS_T") == 0x0000
    assert _echo(orthanc, "NOT_PACS") is None


def test_store_to_modality_sends_the_series_by_c_store(
        orthanc: Orthanc, uploaded: tuple[BuiltSeries, str]) -> None:
    series, study_id = uploaded
    received: list[tuple[str, str]] = []

    def on_store(event: evt.Event) -> int:
        received.append((event.assoc.requestor.ae_title, str(event.dataset.SOPInstanceUID)))
        return 0x0000

    listener = AE(ae_title="TEST_SCP")
    listener.add_supported_context(CTImageStorage)
    listener.add_supported_context(Verification)
    scp = listener.start_server(("127.0.0.1", 0), block=False,
                                evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert scp is not None
    try:
        orthanc.add_modality("scp", Modality("TEST_SCP", scp.server_address[1]))
        orthanc.add_modality("nobody", Modality("NOBODY", _closed_port()))
        assert orthanc.echo("scp")
        assert not orthanc.echo("nobody")
        report = orthanc.store_to_modality("scp", [study_id])
    finally:
        scp.shutdown()
    assert (report["InstancesCount"], report["FailedInstancesCount"]) == (4, 0)
    assert sorted(uid for _, uid in received) == sorted(_sop_uids(series))
    assert {calling for calling, _ in received} == {"PACS_T"}
    with pytest.raises(OrthancError, match="500"):
        orthanc.store_to_modality("nobody", [study_id])


class _StowRecorder(BaseHTTPRequestHandler):
    """Keeps each POST (path, headers, instances) on the server and answers as a STOW-RS
    origin server that stored them all, or, with ``server.fail_first``, all but the first."""

    server: _StowServer

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        instances = multipart_parts(self.headers["Content-Type"], self._body())
        self.server.requests.append((self.path, dict(self.headers), instances))
        failed = instances[:1] if self.server.fail_first else []
        answer = json.dumps(stow_answer(instances[len(failed):], failed)).encode()
        self.send_response(202 if failed else 200)  # PS3.18 10.5.3: some stored
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def _body(self) -> bytes:
        if "Content-Length" in self.headers:
            return self.rfile.read(int(self.headers["Content-Length"]))
        self.server.chunked = True
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0], 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        self.rfile.readline()
        return b"".join(chunks)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # quiet: the test asserts on what came


class _StowServer(ThreadingHTTPServer):
    requests: list[tuple[str, dict[str, str], list[Dataset]]]
    chunked: bool = False
    fail_first: bool = False


@pytest.fixture
def stow_server(orthanc: Orthanc, request: pytest.FixtureRequest) -> Iterator[_StowServer]:
    """A STOW-RS origin server in a thread, Orthanc's DICOMweb server "bonemets"."""
    server = _StowServer(("127.0.0.1", 0), _StowRecorder)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/dicomweb"
    chunked = getattr(request, "param", True)
    orthanc.add_dicomweb_server(
        "bonemets", DicomWebServer(url, {"X-API-Key": API_KEY}, chunked=chunked))
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.mark.parametrize("stow_server", [True, False], indirect=True, ids=["chunked", "length"])
def test_stow_to_server_posts_multipart_dicom_with_the_servers_header(
        orthanc: Orthanc, uploaded: tuple[BuiltSeries, str], stow_server: _StowServer) -> None:
    series, study_id = uploaded
    answer = orthanc.stow_to_server("bonemets", [study_id])
    assert int(answer["InstancesCount"]) == 4
    sent: list[Dataset] = []
    for path, headers, instances in stow_server.requests:
        assert path == "/v1/dicomweb/studies"
        assert headers["X-API-Key"] == API_KEY
        kind = headers["Content-Type"]
        assert kind.startswith("multipart/related") and 'type="application/dicom"' in kind
        assert headers["Accept"] == "application/dicom+json"
        sent += instances
    assert stow_server.chunked == orthanc.dicomweb_servers["bonemets"].chunked
    assert sorted(str(ds.SOPInstanceUID) for ds in sent) == sorted(_sop_uids(series))


def test_stow_to_server_fails_when_the_server_stored_fewer(
        orthanc: Orthanc, uploaded: tuple[BuiltSeries, str], stow_server: _StowServer) -> None:
    stow_server.fail_first = True
    with pytest.raises(OrthancError, match="500") as failure:
        orthanc.stow_to_server("bonemets", [uploaded[1]])
    # Orthanc's answer says nothing; its log (in the error) says why.
    assert "only able to receive 3 instances out of 4" in str(failure.value)
    assert len(stow_server.requests) == 1


@pytest.fixture
def seg_and_sr(uploaded: tuple[BuiltSeries, str]) -> tuple[Dataset, Dataset]:
    """A SEG and an SR of the uploaded series, as bonemets sends back to the PACS."""
    sources = [pydicom.dcmread(p) for p in uploaded[0].paths]
    return small_seg(sources), small_sr(sources)


def _found_once(orthanc: Orthanc, made: list[Dataset]) -> None:
    """Each of ``made`` is in Orthanc once, found by QIDO-RS by its modality."""
    study_uid = str(made[0].StudyInstanceUID)
    for ds in made:
        (found,) = orthanc.qido(f"studies/{study_uid}/instances", {"Modality": ds.Modality})
        assert found["00080018"]["Value"] == [str(ds.SOPInstanceUID)]
        assert found["00080016"]["Value"] == [str(ds.SOPClassUID)]


def test_orthanc_stores_seg_and_sr_sent_by_c_store(
        orthanc: Orthanc, seg_and_sr: tuple[Dataset, Dataset]) -> None:
    sender = AE(ae_title="BONEMETS")
    for ds in seg_and_sr:
        sender.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    for _ in range(2):  # a delivery retried: the second C-STORE of each succeeds too
        assoc = sender.associate("127.0.0.1", orthanc.dicom_port, ae_title=orthanc.ae_title)
        assert assoc.is_established
        assert [assoc.send_c_store(ds).Status for ds in seg_and_sr] == [0x0000, 0x0000]
        assoc.release()
    _found_once(orthanc, list(seg_and_sr))


def test_orthanc_stores_seg_and_sr_sent_by_stow(
        orthanc: Orthanc, seg_and_sr: tuple[Dataset, Dataset]) -> None:
    for _ in range(2):  # a delivery retried: the second STOW-RS succeeds too
        answer = orthanc.stow([dicom_bytes(ds) for ds in seg_and_sr])
        assert answer.status_code == 200, answer.text
        stored = answer.json()["00081199"]["Value"]  # ReferencedSOPSequence
        assert sorted(item["00081155"]["Value"][0] for item in stored) == sorted(
            str(ds.SOPInstanceUID) for ds in seg_and_sr)
        assert answer.json()["00081198"].get("Value", []) == []  # FailedSOPSequence, empty
    _found_once(orthanc, list(seg_and_sr))


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_stop_then_start_keeps_the_ports_and_the_studies(tmp_path: Path) -> None:
    require_orthanc()
    series = build_series(tmp_path / "series", slices=3, size=64)
    with Orthanc(tmp_path / "orthanc") as server:
        ports = (server.http_port, server.dicom_port)
        ids = server.upload(series.paths)
        assert _echo(server, server.ae_title) == 0x0000
        server.stop()
        server.stop()  # idempotent
        assert not server.running
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.url}/system", timeout=2)
        server.start()
        assert (server.http_port, server.dicom_port) == ports
        assert sorted(server.instances()) == sorted(ids)
        assert server.request("GET", "/system").json()["DicomPort"] == ports[1]
        assert _echo(server, server.ae_title) == 0x0000
    assert not server.running


def test_a_failed_start_says_why_with_the_log(tmp_path: Path) -> None:
    require_orthanc()
    server = Orthanc(tmp_path / "orthanc", start_timeout_s=20)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("0.0.0.0", server.http_port))
        squatter.listen()
        with pytest.raises(OrthancError, match="its log ends") as failure:
            server.start()
    assert "already in use" in str(failure.value)
    assert not server.running


def test_without_orthanc_tests_skip_with_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.integration.orthanc as module

    monkeypatch.setattr(module, "ORTHANC_MISSING", module.MISSING_REASON)
    with pytest.raises(pytest.skip.Exception, match="orthanc-dicomweb.*make system-packages"):
        require_orthanc()

"""The DIMSE listener: pynetdicom as the sending side (a PACS router), on a free port."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.uid import RLELossless
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    MRImageStorage,
    Verification,
)

from api.commands.serve import with_dicom_listener
from api.config import Settings
from api.dicom.headers import read_header
from api.dicom.pixels import decoder_problem
from api.dimse.instances import SOP_CLASS_NOT_SUPPORTED, failure_code
from api.errors import InvalidUpload
from api.http.app import create_app
from tests.api.conftest import BuiltSeries, as_files, build_series, wait_finished
from tests.api.contract import CheckedClient
from tests.api.fakes import BrightBoneModel
from tests.api.test_dicomweb import as_mr
from tests.conftest import _corpus_dir

PACS = "PACS"


def _corpus(*folders: str) -> list[Path]:
    root = _corpus_dir()
    return sorted(p for folder in folders if (root / folder).is_dir()
                  for p in (root / folder).iterdir() if p.is_file())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def listening(tmp_path: Path) -> Iterator[tuple[TestClient, int]]:
    port = free_port()
    settings = Settings(data_dir=tmp_path / "data", decode_workers=1, batch_size=2,
                        dicom_port=port, dicom_quiet_s=0.5, dicom_calling_aes=PACS,
                        dicom_client="tests")  # the test client's own studies
    app = create_app(settings, model_factory=lambda _: BrightBoneModel())
    with_dicom_listener(app)
    with CheckedClient(app, raise_server_exceptions=False) as client:
        yield client, port


def associate(port: int, calling: str = PACS, contexts: tuple[str, ...] = (CTImageStorage,)):
    sender = AE(ae_title=calling)
    for context in (*contexts, Verification):
        sender.add_requested_context(context)
    return sender.associate("127.0.0.1", port, ae_title="BONEMETS")


def wait_for_jobs(client: TestClient, count: int, timeout_s: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        items = client.get("/v1/studies").json()["items"]
        if len(items) >= count:
            return items
        time.sleep(0.1)
    raise AssertionError(f"{count} jobs did not appear in {timeout_s} s")


def test_c_echo_succeeds(listening: tuple[TestClient, int]) -> None:
    _, port = listening
    assoc = associate(port)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


def test_a_study_sent_by_c_store_becomes_one_job_with_what_an_upload_finds(
    listening: tuple[TestClient, int], series: BuiltSeries
) -> None:
    client, port = listening
    assoc = associate(port)
    statuses = [assoc.send_c_store(pydicom.dcmread(path)).Status for path in series.paths]
    assoc.release()
    assert statuses == [0x0000] * len(series.paths)
    [job] = wait_for_jobs(client, 1)
    time.sleep(1.0)  # no second job for the same study
    assert len(client.get("/v1/studies").json()["items"]) == 1
    stored = wait_finished(client, job["id"])
    uploaded = client.post("/v1/studies?wait=60", files=as_files(series.paths)).json()
    assert stored["state"] == uploaded["state"] == "succeeded"
    assert stored["result"]["lesions"] == uploaded["result"]["lesions"]
    assert len(stored["result"]["lesions"]) == 1
    assert stored["progress"]["slices_total"] == len(series.paths)


def test_a_calling_ae_title_not_on_the_list_is_rejected_at_association(
    listening: tuple[TestClient, int]
) -> None:
    _, port = listening
    assoc = associate(port, calling="INTRUDER")
    assert assoc.is_rejected
    rejection = assoc.acceptor.primitive
    # PS3.8 7.1.1.9-11: rejected-permanent, by the service user, calling AE not recognised.
    assert (rejection.result, rejection.result_source, rejection.diagnostic) == (0x01, 0x01, 0x03)


def test_an_mr_instance_gets_a_failure_status(listening: tuple[TestClient, int],
                                              series: BuiltSeries, tmp_path: Path) -> None:
    client, port = listening
    mr = tmp_path / "mr.dcm"
    mr.write_bytes(as_mr(series.paths[0], tmp_path))
    assoc = associate(port, contexts=(CTImageStorage, MRImageStorage))
    answer = assoc.send_c_store(pydicom.dcmread(mr))
    assoc.release()
    assert answer.Status == SOP_CLASS_NOT_SUPPORTED
    assert "CT" in answer.ErrorComment
    time.sleep(1.0)
    assert client.get("/v1/studies").json()["items"] == []


def test_a_compressed_study_is_read_as_the_uncompressed_one(
    listening: tuple[TestClient, int], series: BuiltSeries
) -> None:
    client, port = listening
    sender = AE(ae_title=PACS)
    sender.add_requested_context(CTImageStorage, [RLELossless])
    assoc = sender.associate("127.0.0.1", port, ae_title="BONEMETS")
    statuses = []
    for path in series.paths:
        ds = pydicom.dcmread(path)
        ds.compress(RLELossless)
        statuses.append(assoc.send_c_store(ds).Status)
    assoc.release()
    assert statuses == [0x0000] * len(series.paths)
    [job] = wait_for_jobs(client, 1)
    stored = wait_finished(client, job["id"])
    uploaded = client.post("/v1/studies?wait=60", files=as_files(series.paths)).json()
    assert stored["result"]["lesions"] == uploaded["result"]["lesions"] != []


def test_a_study_refused_as_a_whole_becomes_a_failed_job_with_the_reason(
    listening: tuple[TestClient, int], series: BuiltSeries
) -> None:
    client, port = listening
    instances = [pydicom.dcmread(path) for path in series.paths]
    for ds in instances:
        ds.BodyPartExamined = "HEAD"  # each instance readable; the series refused as a whole
    assoc = associate(port)
    assert {assoc.send_c_store(ds).Status for ds in instances} == {0x0000}
    assoc.release()
    [job] = wait_for_jobs(client, 1)
    failed = client.get(f"/v1/studies/{job['id']}").json()
    assert failed["state"] == "failed"
    assert failed["error"]["type"] == "urn:bonemets:problem:unsupported-body-part"


def test_no_patient_data_reaches_any_log(listening: tuple[TestClient, int], series: BuiltSeries,
                                         caplog: pytest.LogCaptureFixture) -> None:
    client, port = listening
    caplog.set_level(logging.DEBUG)
    instances = [pydicom.dcmread(path) for path in series.paths]
    for ds in instances:
        ds.PatientName, ds.PatientID = "Quixote^Dulcinea", "MRN-7731-QX"
    assoc = associate(port)
    for ds in instances:
        assoc.send_c_store(ds)
    assoc.release()
    wait_finished(client, wait_for_jobs(client, 1)[0]["id"])
    assert "Quixote" not in caplog.text
    assert "Dulcinea" not in caplog.text
    assert "MRN-7731" not in caplog.text
    # pynetdicom's own records, at DEBUG, were searched too.
    assert any(record.name.startswith("pynetdicom") for record in caplog.records)


@pytest.mark.parametrize("path", _corpus("singles", "enhanced_multiframe"), ids=lambda p: p.name)
def test_real_ct_in_its_own_transfer_syntax_is_answered_as_the_reader_reads_it(
    listening: tuple[TestClient, int], path: Path
) -> None:
    """Stored when the upload's header pass takes the file, else its failure code; a transfer
    syntax no plugin decodes is refused at association (its presentation context)."""
    _, port = listening
    ds = pydicom.dcmread(path)
    sender = AE(ae_title=PACS)
    sender.add_requested_context(ds.SOPClassUID, [ds.file_meta.TransferSyntaxUID])
    assoc = sender.associate("127.0.0.1", port, ae_title="BONEMETS")
    if decoder_problem(ds.file_meta.TransferSyntaxUID) is not None:
        assert not assoc.is_established
        return
    try:
        read_header(path)
        expected = 0x0000
    except InvalidUpload as exc:
        expected = failure_code(exc)
    answer = assoc.send_c_store(ds)
    assoc.release()
    assert answer.Status == expected, answer


def test_stopping_the_gateway_closes_the_port_and_aborts_open_associations(
    tmp_path: Path, series: BuiltSeries
) -> None:
    port = free_port()
    settings = Settings(data_dir=tmp_path / "data", decode_workers=1, dicom_port=port,
                        dicom_quiet_s=60)
    app = create_app(settings, model_factory=lambda _: BrightBoneModel())
    with_dicom_listener(app)
    with CheckedClient(app):
        assoc = associate(port)
        assert assoc.send_c_store(pydicom.dcmread(series.paths[0])).Status == 0x0000
    deadline = time.monotonic() + 10
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.05)
    assert assoc.is_aborted
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    # The instance waits on disk for the next start, which queues it once quiet.
    assert len(list((settings.data_dir / "dimse" / "incoming").rglob("*.dcm"))) == 1


def test_a_study_sent_with_c_store_priority_high_is_a_stat_study(
    listening: tuple[TestClient, int], tmp_path: Path
) -> None:
    client, port = listening
    urgent = build_series(tmp_path / "urgent", slices=3, size=64)
    usual = build_series(tmp_path / "usual", slices=4, size=64)
    assoc = associate(port)
    # PS3.7: 0001H HIGH, 0000H MEDIUM; one HIGH instance is enough.
    statuses = [assoc.send_c_store(pydicom.dcmread(path), priority=int(k == 0)).Status
                for k, path in enumerate(urgent.paths)]
    statuses += [assoc.send_c_store(pydicom.dcmread(path)).Status for path in usual.paths]
    assoc.release()
    assert statuses == [0x0000] * 7
    jobs = wait_for_jobs(client, 2)
    priorities = {job["progress"]["slices_total"]:
                  client.get(f"/v1/studies/{job['id']}").json()["priority"] for job in jobs}
    assert priorities == {3: "stat", 4: "routine"}

"""The OpenAPI document against what the app really answers: every route and status, once.

The API tests' client checks each answer against the document (tests/api/contract.py); this
tour makes every declared (path, method, status) happen, so that a status a route can no
longer give, or one it gives without a schema, fails here.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import numpy as np
import numpy.typing as npt
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from api.auth.principal import Principal, Scope
from api.config import Settings
from api.errors import InferenceTimeout, InferenceUnavailable, ModelError
from api.http.app import create_app
from api.http.auth import authenticate
from api.http.quotas import client_inflight
from api.inference.protocol import ModelInfo, Segmentation
from api.schemas import Problem
from api.study.storage import open_study_store
from tests.api.conftest import as_files, build_series, wait_finished
from tests.api.contract import CheckedClient, Contract, Pair, example_path, new_key
from tests.api.fakes import BrightBoneModel
from tests.api.test_dicomweb import STOW, related
from tests.api.test_dimse import free_port

JOB = "/v1/studies/{job_id}"
MASK = "/v1/studies/{job_id}/slices/{index}/mask.png"
OVERLAY = "/v1/studies/{job_id}/slices/{index}/overlay.png"
SEG = "/v1/studies/{job_id}/seg.dcm"
SR = "/v1/studies/{job_id}/sr.dcm"
FHIR = "/v1/studies/{job_id}/fhir"
DELIVERIES = "/v1/studies/{job_id}/deliveries"
VIEWER = "/v1/studies/{job_id}/viewer"
# FastAPI documents a 422 for every route with a parameter; a str path parameter (or query)
# cannot fail validation, so these are declared (as problems, like any 422) but cannot happen.
NEVER_ANSWERED = {(JOB, "get", "422"), (JOB, "delete", "422"), (SEG, "get", "422"),
                  (SR, "get", "422"), (FHIR, "get", "422"), (DELIVERIES, "post", "422"),
                  (VIEWER, "get", "422")}


class SwitchableModel(BrightBoneModel):
    """The bright-bone fake, whose ``info`` and ``segment`` raise what a test sets."""

    def __init__(self) -> None:
        super().__init__()
        self.info_error: Exception | None = None
        self.segment_error: Exception | None = None

    async def info(self) -> ModelInfo:
        if self.info_error is not None:
            raise self.info_error
        return await super().info()

    async def segment(self, hounsfield: npt.NDArray[np.int16]) -> Segmentation:
        if self.segment_error is not None:
            raise self.segment_error
        return await super().segment(hounsfield)


def _submit_failing(client: TestClient, model: SwitchableModel, paths: list[Path],
                    error: Exception) -> int:
    model.segment_error = error
    try:
        return client.post("/v1/studies?wait=60", files=as_files(paths)).status_code
    finally:
        model.segment_error = None


def _models_failing(client: TestClient, model: SwitchableModel, error: Exception) -> int:
    model.info_error = error
    try:
        return client.get("/v1/models").status_code
    finally:
        model.info_error = None


def _tour_models_and_health(client: CheckedClient, model: SwitchableModel) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/v1/models").status_code == 200
    assert _models_failing(client, model, ModelError("x")) == 502
    assert _models_failing(client, model, InferenceUnavailable("x")) == 503
    assert _models_failing(client, model, InferenceTimeout("x")) == 504
    model.info_error = InferenceUnavailable("down")
    assert client.get("/readyz").status_code == 503
    model.info_error = None
    with client.sending(f"Bearer {new_key(client, 'scraper', [Scope.METRICS])}"):
        assert client.get("/metrics").status_code == 200


def _tour_submissions(client: TestClient, model: SwitchableModel, small: list[Path],
                      large: list[Path]) -> str:
    assert client.post("/v1/studies", files=as_files(small)).status_code == 202
    done = client.post("/v1/studies?wait=60", files=as_files(small))
    assert done.status_code == 200
    pdf = [("files", ("report.pdf", b"%PDF-1.4 x", "application/pdf"))]
    assert client.post("/v1/studies", files=pdf).status_code == 415
    assert client.post("/v1/studies", data={"x": "y"}).status_code == 400
    assert client.post("/v1/studies", files=as_files(large)).status_code == 413
    assert client.post("/v1/studies?wait=-1", files=as_files(small)).status_code == 422
    keyed = {"Idempotency-Key": "tour-1"}
    assert client.post("/v1/studies", files=as_files(small), headers=keyed).status_code == 202
    assert client.post("/v1/studies", files=as_files(small[:1]),
                       headers=keyed).status_code == 409
    assert _submit_failing(client, model, small, RuntimeError("bug")) == 500
    assert _submit_failing(client, model, small, ModelError("x")) == 502
    assert _submit_failing(client, model, small, InferenceUnavailable("x")) == 503
    assert _submit_failing(client, model, small, InferenceTimeout("x")) == 504
    client.app.dependency_overrides[client_inflight] = lambda: 10**6
    try:
        assert client.post("/v1/studies", files=as_files(small)).status_code == 429
    finally:
        del client.app.dependency_overrides[client_inflight]
    return str(done.json()["id"])


def _tour_dicomweb(client: TestClient, small: list[Path]) -> None:
    instances = [p.read_bytes() for p in small]
    body, headers = related(instances)
    assert client.post(STOW, content=body, headers=headers).status_code == 200
    body, headers = related([*instances, b"not dicom"])
    assert client.post(STOW, content=body, headers=headers).status_code == 202
    body, headers = related([b"not dicom"])
    assert client.post(STOW, content=body, headers=headers).status_code == 409
    assert client.post(STOW, content=body[:-9], headers=headers).status_code == 400
    assert client.post(f"{STOW}?priority=now", content=body, headers=headers).status_code == 422
    too_large = {**headers, "Content-Length": str(10**13)}
    assert client.post(STOW, content=body, headers=too_large).status_code == 413
    client.app.dependency_overrides[client_inflight] = lambda: 10**6
    try:
        assert client.post(STOW, content=body, headers=headers).status_code == 429
    finally:
        del client.app.dependency_overrides[client_inflight]


def _tour_job(client: TestClient, model: SwitchableModel, small: list[Path], job_id: str,
              settings: Settings) -> None:
    unknown = "0123456789abcdef0123456789abcdef"
    assert client.get(f"/v1/studies/{job_id}").status_code == 200
    assert client.get(f"/v1/studies/{unknown}").status_code == 404
    for png in ("mask.png", "overlay.png"):
        assert client.get(f"/v1/studies/{job_id}/slices/1/{png}").status_code == 200
        assert client.get(f"/v1/studies/{job_id}/slices/99/{png}").status_code == 404
        assert client.get(f"/v1/studies/{job_id}/slices/x/{png}").status_code == 422
    assert client.get(f"/v1/studies/{job_id}/slices/1/overlay.png?window=soft-tissue"
                      ).status_code == 200
    for dicom in ("seg.dcm", "sr.dcm", "fhir", "viewer"):
        assert client.get(f"/v1/studies/{job_id}/{dicom}").status_code == 200
        assert client.get(f"/v1/studies/{unknown}/{dicom}").status_code == 404
    assert client.post(f"/v1/studies/{job_id}/deliveries").status_code == 202
    assert client.post(f"/v1/studies/{unknown}/deliveries").status_code == 404
    model.delay_s = 1.0
    running = client.post("/v1/studies", files=as_files(small)).json()["id"]
    for png in ("mask.png", "overlay.png"):
        assert client.get(f"/v1/studies/{running}/slices/0/{png}").status_code == 409
    for dicom in ("seg.dcm", "sr.dcm", "fhir", "viewer"):
        assert client.get(f"/v1/studies/{running}/{dicom}").status_code == 409
    assert client.post(f"/v1/studies/{running}/deliveries").status_code == 409
    model.delay_s = 0.0
    wait_finished(client, running)
    open_study_store(settings).objects.put_bytes(f"studies/{running}/result.json",
                                                 b'{"slices": "broken"}')
    assert client.get(f"/v1/studies/{running}").status_code == 500
    assert client.delete(f"/v1/studies/{job_id}").status_code == 204
    assert client.delete(f"/v1/studies/{job_id}").status_code == 404


def _tour_credentials(client: CheckedClient) -> None:
    """Each protected operation refuses no credentials (401) and a key without scopes (403)."""
    scopeless = new_key(client, "nobody", [])
    for template, method, status in sorted(client.contract.pairs()):
        if status not in ("401", "403"):
            continue
        sent = None if status == "401" else f"Bearer {scopeless}"
        with client.sending(sent):
            response = client.request(method, example_path(template))
        assert response.status_code == int(status), (template, method, response.text)


def _tour_listing_and_links(client: TestClient, app: FastAPI, job_id: str) -> None:
    assert client.get("/v1/studies").status_code == 200
    assert client.get("/v1/studies?limit=0").status_code == 422
    for png in ("mask.png", "overlay.png"):
        forged = f"/v1/studies/{job_id}/slices/1/{png}?client=x&expires=9999999999&signature=x"
        with client.sending(None):  # a link is what a browser follows, without a key
            assert client.get(forged).status_code == 403
    app.dependency_overrides[authenticate] = lambda: Principal("a", frozenset({Scope.READ}))
    try:
        assert client.get("/v1/studies?client=b").status_code == 403
        app.dependency_overrides[authenticate] = lambda: Principal("a", frozenset())
        pdf = [("files", ("report.pdf", b"%PDF-1.4 x", "application/pdf"))]
        assert client.post("/v1/studies", files=pdf).status_code == 403
        assert client.get(f"/v1/studies/{job_id}").status_code == 403
        assert client.delete(f"/v1/studies/{job_id}").status_code == 403
    finally:
        del app.dependency_overrides[authenticate]


def test_every_declared_route_and_status_is_answered_as_documented(tmp_path: Path) -> None:
    # A PACS that is not there: deliveries stay pending, and a resend is accepted.
    destinations = tmp_path / "destinations.toml"
    destinations.write_text('[[destination]]\nname = "absent"\nkind = "c-store"\n'
                            f'ae_title = "PACS"\nhost = "127.0.0.1"\nport = {free_port()}\n')
    settings = Settings(data_dir=tmp_path / "d", decode_workers=1, batch_size=2,
                        inference_retries=0, max_slices=4, destinations=destinations)
    model = SwitchableModel()
    small = build_series(tmp_path / "small", slices=3, lesion_slices=(1, 1)).paths
    large = build_series(tmp_path / "large", slices=6).paths
    seen: set[Pair] = set()
    app = create_app(settings, model_factory=lambda _: model)
    with CheckedClient(app, raise_server_exceptions=False, seen=seen) as client:
        _tour_models_and_health(client, model)
        job_id = _tour_submissions(client, model, small, large)
        _tour_dicomweb(client, small)
        _tour_listing_and_links(client, app, job_id)
        _tour_job(client, model, small, job_id, settings)
        _tour_credentials(client)
        declared = client.contract.pairs()
    # Any route can fail unexpectedly, so each documents a 500; the tour makes it happen where
    # a fault can be set up from outside (a failed job, a stored result that is not one).
    unexpected = {pair for pair in declared if pair[2] == "500"}
    assert {("/v1/studies", "post", "500"), (JOB, "get", "500")} <= seen
    assert declared - seen - unexpected - NEVER_ANSWERED == set()
    assert NEVER_ANSWERED <= declared
    assert {MASK, OVERLAY, SEG, SR, FHIR, VIEWER} <= {pair[0] for pair in seen}


def test_every_operation_documents_a_problem_for_500(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            content = operation["responses"]["500"]["content"]
            assert content == {"application/problem+json": {
                "schema": {"$ref": "#/components/schemas/Problem"}}}, (path, method)


def _tiny_app(body: dict[str, object], status: int, media: str) -> FastAPI:
    app = FastAPI()

    @app.get("/thing", responses={404: {"description": "gone", "content": {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}})
    async def thing() -> JSONResponse:
        return JSONResponse(body, status_code=status, media_type=media)

    app.openapi()  # build, then make sure the referenced schema is there
    assert app.openapi_schema is not None
    app.openapi_schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
        Problem.model_json_schema()
    )
    return app


PROBLEM_BODY = {"type": "urn:x", "title": "Gone", "status": 404, "detail": "gone"}


@pytest.mark.parametrize(("body", "status", "media", "why"), [
    (PROBLEM_BODY, 410, "application/problem+json", "undocumented"),
    (PROBLEM_BODY, 404, "application/json", "not in"),
    ({**PROBLEM_BODY, "extra": 1}, 404, "application/problem+json", "breaks"),
    ({"type": "urn:x"}, 404, "application/problem+json", "breaks"),
])
def test_the_contract_check_fails_on_an_answer_the_document_does_not_allow(
    body: dict[str, object], status: int, media: str, why: str
) -> None:
    app = _tiny_app(body, status, media)
    with TestClient(app) as plain:
        response = plain.get("/thing")
    with pytest.raises(AssertionError, match=why):
        Contract(app.openapi()).check(response)
    allowed = _tiny_app(PROBLEM_BODY, 404, "application/problem+json")
    with TestClient(allowed) as plain:
        assert Contract(allowed.openapi()).check(plain.get("/thing")) == ("/thing", "get", "404")


def test_every_published_example_is_a_body_its_schema_accepts(client: TestClient) -> None:
    contract = Contract(client.get("/openapi.json").json())
    for name, schema in contract.components["schemas"].items():
        if "example" in schema:
            rooted = {"$ref": f"#/components/schemas/{name}", "components": contract.components}
            jsonschema.validate(schema["example"], rooted, cls=jsonschema.Draft202012Validator)

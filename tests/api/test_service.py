"""Health, readiness, the model listing and the OpenAPI page."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import BaseModel

import api.schemas
from api.config import Settings
from api.http.app import create_app
from tests.api.contract import CheckedClient
from tests.api.fakes import DownModel


def test_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "detail": None}
    assert client.get("/readyz").status_code == 200


def test_readyz_is_503_when_the_model_is_down(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path), model_factory=lambda _: DownModel())
    with CheckedClient(app) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert "down" in response.json()["detail"]
        assert client.get("/healthz").status_code == 200
        models = client.get("/v1/models")
        assert models.status_code == 503
        assert models.headers["retry-after"]
        assert models.json()["type"] == "urn:bonemets:problem:inference-unavailable"


def test_readyz_fails_when_the_model_window_differs_from_the_settings(tmp_path: Path) -> None:
    from tests.api.fakes import BrightBoneModel

    settings = Settings(data_dir=tmp_path, window="40:400")
    with CheckedClient(create_app(settings, model_factory=lambda _: BrightBoneModel())) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert "40:400" in response.json()["detail"]


def test_models_lists_window_and_threshold(client: TestClient) -> None:
    (model,) = client.get("/v1/models").json()
    assert model["windows"] == [{"level": 400.0, "width": 1800.0}]
    assert model["threshold"] == 0.5
    assert model["input_size"] == 512 and model["ready"] is True


def test_openapi_documents_every_route_with_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/v1/studies", "/v1/studies/{job_id}", "/v1/studies/{job_id}/slices/{index}/mask.png",
            "/v1/studies/{job_id}/slices/{index}/overlay.png", "/healthz", "/readyz",
            "/v1/models"} <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    ours = {name for name, value in vars(api.schemas).items()
            if isinstance(value, type) and issubclass(value, BaseModel) and value is not BaseModel}
    published = ours & set(schemas)
    assert {"StudyJob", "StudyResult", "Lesion", "SliceResult", "ModelOut", "Problem"} <= published
    for name in published:
        assert "example" in schemas[name], name
        # Each example is a body the model itself accepts.
        getattr(api.schemas, name).model_validate(schemas[name]["example"])
    assert client.get("/docs").status_code == 200

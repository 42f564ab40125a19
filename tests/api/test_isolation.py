"""Each client sees only its own studies: another's id answers like an unknown one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.config import Settings
from api.http.app import create_app
from api.study.jobs import open_job_store
from tests.api.callers import as_caller, with_callers
from tests.api.conftest import BuiltSeries, as_files, build_series
from tests.api.contract import CheckedClient
from tests.api.fakes import BrightBoneModel

UNKNOWN = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def small(tmp_path: Path) -> BuiltSeries:
    return build_series(tmp_path / "small", slices=3, lesion_slices=(1, 1))


@pytest.fixture
def api(tmp_path: Path, fake_model: BrightBoneModel) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", decode_workers=1, batch_size=2,
                        inference_retries=0)
    app = with_callers(create_app(settings, model_factory=lambda _: fake_model))
    with CheckedClient(app, raise_server_exceptions=False, scopes=None) as client:
        yield client


def _submit(api: TestClient, who: str, series: BuiltSeries) -> dict[str, Any]:
    response = api.post("/v1/studies?wait=60", files=as_files(series.paths),
                        headers=as_caller(who))
    assert response.status_code in (200, 503), response.text
    job = api.get(response.headers["location"], headers=as_caller(who)).json()
    assert job["state"] in ("succeeded", "failed")
    return job


def _without_instance(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != "instance"}


def _listed(api: TestClient, who: str, query: str = "") -> list[str]:
    response = api.get(f"/v1/studies?limit=200{query}", headers=as_caller(who))
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


ROUTES = [("get", ""), ("get", "/slices/1/mask.png"), ("get", "/slices/1/overlay.png"),
          ("delete", "")]


@pytest.mark.parametrize(("method", "suffix"), ROUTES)
def test_another_clients_study_answers_exactly_like_an_unknown_one(
    api: TestClient, small: BuiltSeries, method: str, suffix: str
) -> None:
    alices = _submit(api, "alice", small)["id"]
    theirs = api.request(method, f"/v1/studies/{alices}{suffix}", headers=as_caller("bob"))
    unknown = api.request(method, f"/v1/studies/{UNKNOWN}{suffix}", headers=as_caller("bob"))
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.headers["content-type"] == unknown.headers["content-type"]
    assert _without_instance(theirs.json()) == _without_instance(unknown.json())
    assert theirs.json()["type"] == "urn:bonemets:problem:job-not-found"
    assert alices not in theirs.json()["detail"]
    # Nothing was touched: alice still has her study, whole.
    mine = api.get(f"/v1/studies/{alices}", headers=as_caller("alice"))
    assert mine.status_code == 200 and mine.json()["state"] == "succeeded"
    assert api.get(f"/v1/studies/{alices}/slices/1/mask.png",
                   headers=as_caller("alice")).status_code == 200


def test_a_client_lists_only_its_own_and_an_admin_sees_and_deletes_all(
    api: TestClient, small: BuiltSeries
) -> None:
    alices = _submit(api, "alice", small)["id"]
    bobs = _submit(api, "bob", small)["id"]
    assert _listed(api, "alice") == [alices]
    assert _listed(api, "bob") == [bobs]
    assert _listed(api, "alice", "&client=alice") == [alices]
    refused = api.get("/v1/studies?client=bob", headers=as_caller("alice"))
    assert refused.status_code == 403 and bobs not in refused.text
    assert _listed(api, "root") == [bobs, alices]
    assert _listed(api, "root", "&client=alice") == [alices]
    assert api.get(f"/v1/studies/{alices}", headers=as_caller("root")).json()["id"] == alices
    assert api.get(f"/v1/studies/{alices}/slices/1/overlay.png",
                   headers=as_caller("root")).status_code == 200
    assert api.delete(f"/v1/studies/{alices}", headers=as_caller("root")).status_code == 204
    assert api.get(f"/v1/studies/{alices}", headers=as_caller("alice")).status_code == 404
    assert _listed(api, "alice") == []
    assert api.delete(f"/v1/studies/{bobs}", headers=as_caller("bob")).status_code == 204
    assert _listed(api, "root") == []


def test_pages_and_the_state_filter_give_the_right_ids_in_order(
    api: TestClient, small: BuiltSeries, fake_model: BrightBoneModel
) -> None:
    submitted = []
    for failing in (False, True, False, False, True):
        fake_model.fail_next = 1 if failing else 0
        submitted.append(_submit(api, "alice", small))
    _submit(api, "bob", small)
    newest_first = [job["id"] for job in reversed(submitted)]
    failed = [job["id"] for job in reversed(submitted) if job["state"] == "failed"]
    assert len(failed) == 2
    pages, url = [], "/v1/studies?limit=2"
    while url:
        page = api.get(url, headers=as_caller("alice")).json()
        pages.append([item["id"] for item in page["items"]])
        assert (page["next"] is None) == (page["next_cursor"] is None)
        url = page["next"]
    assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:]]
    first = api.get("/v1/studies?limit=1&state=failed", headers=as_caller("alice")).json()
    assert [item["id"] for item in first["items"]] == failed[:1]
    assert "state=failed" in first["next"]
    second = api.get(first["next"], headers=as_caller("alice")).json()
    assert [item["id"] for item in second["items"]] == failed[1:]
    assert second["next"] is None
    both = _listed(api, "alice", "&state=failed&state=succeeded")
    assert both == newest_first
    summary = api.get("/v1/studies?limit=1", headers=as_caller("alice")).json()["items"][0]
    newest = submitted[-1]
    assert summary == {key: newest[key] for key in
                       ("id", "state", "progress", "created_at", "updated_at")}


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "state=done", "cursor=%%%",
                                   "cursor=bm90IGEgY3Vyc29y"])
def test_a_bad_page_request_is_a_422(api: TestClient, query: str) -> None:
    response = api.get(f"/v1/studies?{query}", headers=as_caller("alice"))
    assert response.status_code == 422
    assert response.json()["type"] == "urn:bonemets:problem:invalid-request"


def test_a_study_from_before_owners_is_the_admins_alone(
    api: TestClient, small: BuiltSeries, tmp_path: Path
) -> None:
    job = _submit(api, "alice", small)
    jobs = open_job_store(Settings(data_dir=tmp_path / "data"))  # the app's, SQLite or not
    with jobs.transaction() as cur:
        cur.execute("UPDATE jobs SET owner = NULL WHERE id = ?", (job["id"],))
    jobs.close()
    assert api.get(f"/v1/studies/{job['id']}", headers=as_caller("alice")).status_code == 404
    assert _listed(api, "alice") == []
    assert _listed(api, "root") == [job["id"]]
    seen = api.get(f"/v1/studies/{job['id']}", headers=as_caller("root")).json()
    link = seen["result"]["slices"][1]["mask_url"]
    assert "client=&" in link
    assert api.get(link).status_code == 200  # no credentials: the admin's link
    assert api.delete(f"/v1/studies/{job['id']}", headers=as_caller("alice")).status_code == 404
    assert api.delete(f"/v1/studies/{job['id']}", headers=as_caller("root")).status_code == 204


def test_a_submitter_without_read_scope_cannot_follow_its_study(
    api: TestClient, small: BuiltSeries
) -> None:
    response = api.post("/v1/studies", files=as_files(small.paths), headers=as_caller("writer"))
    assert response.status_code == 202
    assert api.get(response.headers["location"], headers=as_caller("writer")).status_code == 403
    assert api.get(response.headers["location"], headers=as_caller("root")).status_code == 200

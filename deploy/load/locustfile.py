"""Locust users of the bonemets gateway: upload a study, wait for it, read it, delete it.

Run by ``bonemets load`` (and ``bonemets soak``), which prepare the studies once and set:

    BONEMETS_LOAD_KEY       the API key (studies:write, studies:read, studies:delete)
    BONEMETS_LOAD_STUDIES   a folder of prepared studies: <name>/*.dcm and <name>.zip
    BONEMETS_LOAD_THINK     seconds between one user's studies, "MIN:MAX" (default 5:15)
    BONEMETS_LOAD_EXTRAS    the share of studies whose SEG, SR and FHIR are fetched (0.2)
    BONEMETS_LOAD_TIMINGS   optional: a file to which each upload-to-result time is appended
                            as a JSON line, exactly (locust's own percentiles are rounded)
    BONEMETS_LOAD_SUMMARY   optional: a JSON file of the final counts by request name and the
                            errors, written once every user has stopped (locust's last CSV
                            can be written before the last requests end)

An upload answered 429 (the client's limits) is sent again after its Retry-After, as a
well-behaved client does; each wait shows as "429 Retry-After", not as a failure.
Requests are named by route template (``/v1/studies/{job_id}``), not by URL, so that
locust's statistics group them. Each study's whole round trip is one task: when the run
ends, ``--stop-timeout`` lets a user finish it, delete included.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

from locust import HttpUser, between, events, task

POLL_S = 1.0  # a hospital system polls about once a second; faster only costs the gateway
RESULT_TIMEOUT_S = 1800.0
SLICES_FETCHED = 3  # a reader looks at a few slices, not all of them


def _think() -> tuple[float, float]:
    low, _, high = os.environ.get("BONEMETS_LOAD_THINK", "5:15").partition(":")
    return float(low), float(high or low)


def _studies() -> list[Path]:
    root = Path(os.environ["BONEMETS_LOAD_STUDIES"])
    found = sorted(path for path in root.iterdir() if path.is_dir())
    if not found:
        raise RuntimeError(f"no prepared study under {root}")
    return found


class Radiology(HttpUser):
    """A hospital system sending CT studies one after another, with pauses between them."""

    wait_time = between(*_think())

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {os.environ['BONEMETS_LOAD_KEY']}"
        self.studies = _studies()
        self.extras_share = float(os.environ.get("BONEMETS_LOAD_EXTRAS", "0.2"))
        self.timings = os.environ.get("BONEMETS_LOAD_TIMINGS")

    @task
    def study_round_trip(self) -> None:
        study = random.choice(self.studies)
        as_zip = random.random() < 0.5
        began = time.perf_counter()
        job = self._upload(study, as_zip)
        if job is None:
            return
        finished = self._wait(job["id"], job)
        elapsed = time.perf_counter() - began
        ok = finished is not None and finished.get("state") == "succeeded"
        events.request.fire(
            request_type="STUDY", name="upload-to-result", response_time=elapsed * 1000.0,
            response_length=0, context={},
            exception=None if ok else RuntimeError(f"job ended {_state(finished)}"),
        )
        if ok and finished is not None:
            self._record(elapsed, study, as_zip)
            self._read(finished)
        self._delete(job["id"])

    def _upload(self, study: Path, as_zip: bool) -> dict[str, Any] | None:
        if as_zip:
            zipped = study.with_suffix(".zip")
            files = [("files", (zipped.name, zipped.read_bytes(), "application/zip"))]
        else:
            files = [("files", (path.name, path.read_bytes(), "application/dicom"))
                     for path in sorted(study.glob("*.dcm"))]
        name = "/v1/studies [zip]" if as_zip else "/v1/studies [files]"
        deadline = time.monotonic() + RESULT_TIMEOUT_S
        while True:
            with self.client.post("/v1/studies", files=files, name=name,
                                  catch_response=True) as response:
                if response.status_code == 202:
                    job: dict[str, Any] = response.json()
                    return job
                if response.status_code != 429 or time.monotonic() > deadline:
                    response.failure(f"upload answered {response.status_code}")
                    return None
                # The client's limit (studies in flight, uploads a minute): a well-behaved
                # client waits as told and sends again. Counted apart, not as a failure.
                response.success()
                pause = float(response.headers.get("Retry-After", "5"))
            events.request.fire(request_type="BACKOFF", name="429 Retry-After",
                                response_time=pause * 1000.0, response_length=0, context={},
                                exception=None)
            time.sleep(pause)

    def _wait(self, job_id: str, job: dict[str, Any]) -> dict[str, Any] | None:
        deadline = time.monotonic() + RESULT_TIMEOUT_S
        while job.get("state") not in ("succeeded", "failed"):
            if time.monotonic() > deadline:
                return None
            time.sleep(POLL_S)
            response = self.client.get(f"/v1/studies/{job_id}", name="/v1/studies/{job_id}")
            if response.status_code != 200:
                return None
            job = response.json()
        return job

    def _read(self, job: dict[str, Any]) -> None:
        slices = job["result"]["slices"]
        # Slices with findings first: that is where a reader looks.
        marked = [entry for entry in slices if entry["boxes"]] or slices
        for entry in random.sample(marked, min(SLICES_FETCHED, len(marked))):
            self.client.get(entry["mask_url"],
                            name="/v1/studies/{job_id}/slices/{index}/mask.png")
            self.client.get(entry["overlay_url"],
                            name="/v1/studies/{job_id}/slices/{index}/overlay.png")
        if random.random() < self.extras_share:
            # A study without a lesion has no SEG: the gateway answers 404, rightly.
            leaves = ("seg.dcm", "sr.dcm", "fhir") if job["result"]["lesions"] else ("sr.dcm",
                                                                                   "fhir")
            for leaf in leaves:
                self.client.get(f"/v1/studies/{job['id']}/{leaf}",
                                name=f"/v1/studies/{{job_id}}/{leaf}")

    def _delete(self, job_id: str) -> None:
        with self.client.delete(f"/v1/studies/{job_id}", name="/v1/studies/{job_id} [delete]",
                                catch_response=True) as response:
            if response.status_code != 204:
                response.failure(f"delete answered {response.status_code}")

    def _record(self, elapsed_s: float, study: Path, as_zip: bool) -> None:
        if not self.timings:
            return
        line = json.dumps({"upload_to_result_s": round(elapsed_s, 4), "study": study.name,
                           "zip": as_zip, "at": time.time()})
        with open(self.timings, "a", encoding="utf-8") as out:  # one short write per line
            out.write(line + "\n")


@events.quitting.add_listener
def _write_summary(environment: Any, **_: Any) -> None:
    path = os.environ.get("BONEMETS_LOAD_SUMMARY")
    if not path:
        return
    stats = environment.stats
    routes = {entry.name: _figures(entry) for entry in stats.entries.values()}
    errors = [f"{error.method} {error.name}: {error.error} x{error.occurrences}"
              for error in stats.errors.values()]
    Path(path).write_text(json.dumps({"total": _figures(stats.total), "routes": routes,
                                      "errors": errors}, indent=2), encoding="utf-8")


def _figures(entry: Any) -> dict[str, Any]:
    return {"requests": entry.num_requests, "failures": entry.num_failures,
            "median_ms": entry.median_response_time,
            "p95_ms": entry.get_response_time_percentile(0.95)}


def _state(job: dict[str, Any] | None) -> str:
    if job is None:
        return "without a result in time (or its poll failed)"
    error = job.get("error") or {}
    return f"{job.get('state')}: {error.get('type', '')}"

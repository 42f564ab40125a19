"""The service's Prometheus metrics: what each process counts while it works.

Every label set is bounded: route templates (never raw paths), methods, statuses, stages,
entrances, priorities, problem type slugs, Triton endpoints, destination kinds. No job,
study, patient or client id is ever a label. The metrics live in prometheus-client's
default registry, as that library intends: one exporter per process (``bonemets serve``
runs one process per role and pod), each scraped on its own (docs/operations.md). What the
job database knows (queue depth, the oldest queued job's age, pending deliveries) is read at
scrape time instead (api/study/backlog.py), so every process reports the same, true values.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Seconds: a health probe's few ms to a large study's minutes.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
STUDY_BUCKETS = (1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 1800, 3600)
STAGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

http_requests = Counter(
    "bonemets_http_requests", "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"])
http_duration = Histogram(
    "bonemets_http_request_duration_seconds", "time to answer an HTTP request (to the end of"
    " its body), by route template and method", ["route", "method"], buckets=REQUEST_BUCKETS)

submissions = Counter(
    "bonemets_submissions", "studies queued, by entrance (upload, stow, dimse) and priority",
    ["entrance", "priority"])
received_bytes = Counter(
    "bonemets_received_bytes", "bytes of studies received and queued, as written to the"
    " upload (zips as sent), by entrance", ["entrance"])
studies = Counter(
    "bonemets_studies", "studies ended, by outcome (succeeded, failed) and problem type slug"
    " (none when succeeded)", ["outcome", "problem"])
study_duration = Histogram(
    "bonemets_study_duration_seconds", "time from a study's upload (its job queued) to its"
    " stored result, for studies that succeeded", buckets=STUDY_BUCKETS)
stage_duration = Histogram(
    "bonemets_stage_duration_seconds", "time of each stage of a study: upload and header"
    " (intake), read, decode, inference, postprocess, write (the pipeline)", ["stage"],
    buckets=STAGE_BUCKETS)
slices_in_flight = Gauge(
    "bonemets_slices_in_flight", "slices being decoded or at the model in this process")
slices_processed = Counter(
    "bonemets_slices_processed", "slices decoded and segmented by this process")

triton_duration = Histogram(
    "bonemets_triton_request_duration_seconds", "time of an inference request to Triton, as"
    " the gateway waited for it, by endpoint", ["endpoint"], buckets=STAGE_BUCKETS)
triton_batch = Histogram(
    "bonemets_triton_batch_size", "slices per inference request sent to Triton, by endpoint",
    ["endpoint"], buckets=BATCH_BUCKETS)
triton_errors = Counter(
    "bonemets_triton_errors", "inference requests to Triton that failed, by endpoint and error"
    " (unavailable, timeout, model)", ["endpoint", "error"])
decoder_restarts = Counter(
    "bonemets_decoder_pool_restarts", "decode process pools replaced after a worker died")

deliveries = Counter(
    "bonemets_deliveries", "delivery attempts to PACS and FHIR destinations, by destination"
    " kind (stow-rs, c-store, fhir) and outcome (delivered, retried, failed)",
    ["kind", "outcome"])
webhooks = Counter(
    "bonemets_webhooks", "webhook event attempts, by outcome (delivered, retried, failed)",
    ["outcome"])
ready = Gauge(
    "bonemets_ready", "1 when this process's last readiness check (/readyz) passed, 0 when"
    " it failed; NaN until the first check")
ready.set(float("nan"))  # no probe yet is no news, not readiness lost


def problem_slug(problem_type: str) -> str:
    """A problem type URI's last part (its slug, e.g. ``decoder-crashed``): the bounded label."""
    return problem_type.rsplit(":", 1)[-1] or "unknown"

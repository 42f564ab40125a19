"""The gateway's app factory: settings, clients made once in the lifespan, routers, errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI

from api.auth.keys import open_key_store
from api.auth.links import LinkSigner, SignedLinks, link_keys
from api.config import Settings, get_settings
from api.delivery.destinations import load_destinations
from api.delivery.webhook_clients import Webhooks, load_webhooks
from api.delivery.webhook_worker import WebhookWorker
from api.delivery.worker import DeliveryWorker
from api.http.audit import install_audit
from api.http.auth import authenticate, guard_plain_routes
from api.http.docs_page import install_docs
from api.http.limits import BodySizeLimit
from api.http.metrics import metrics_listener
from api.http.openapi_security import install_security_docs
from api.http.problems import install_problem_handlers, problem_responses
from api.http.quotas import install_quotas
from api.http.request_log import Gateway
from api.http.routes import (
    deliveries,
    dicomweb,
    health,
    metrics,
    models,
    reports,
    studies,
    viewer,
)
from api.inference.protocol import SegmentationModel
from api.study.decoder_pool import DecoderPool
from api.study.jobs import JobStore, open_job_store
from api.study.pipeline import StudyPipeline
from api.study.retention import sweep_forever
from api.study.runner import Callbacks, JobRunner, Leases, Routing
from api.study.services import Services
from api.study.storage import StudyStore, open_study_store

if TYPE_CHECKING:
    from api.auth.oidc import OidcVerifier

log = logging.getLogger(__name__)

ModelFactory = Callable[[Settings], SegmentationModel]

DESCRIPTION = """Finds suspected bone metastases on CT.

Send a CT study (DICOM files and/or zips) to `POST /v1/studies`; poll the job, or add
`?wait=SECONDS`. The result lists 3D lesions (boxes in pixels, centre in patient mm,
volume, longest axial diameter, probability) and, per slice, 2D boxes and mask URLs.

**Not for clinical use.** The bundled demo model is trained on synthetic phantoms only.
"""


def triton_model(settings: Settings) -> SegmentationModel:
    """The default model: Triton over gRPC, the local one or the external endpoints (several,
    or a name resolving to many, are balanced: api/inference/balancer.py)."""
    from api.inference.balancer import BalancedSegmenter
    from api.inference.triton import TritonSegmenter
    from api.inference.triton_shm import is_local

    mode = settings.triton_shared_memory

    def connect(url: str) -> SegmentationModel:
        return TritonSegmenter(
            url, settings.model_name, timeout_s=settings.inference_timeout_s,
            shared_memory=mode == "on" or (mode == "auto" and is_local(url)),
            shared_memory_slices=settings.batch_size,
            shared_memory_slots=settings.inflight_batches * settings.concurrent_jobs,
        )

    if settings.triton_url is None:
        return connect(f"127.0.0.1:{settings.triton_grpc_port}")
    return BalancedSegmenter(settings.triton_url, connect,
                             refresh_s=settings.triton_resolve_s)


def oidc_verifier(settings: Settings) -> OidcVerifier | None:
    """The identity provider's token checker, when one is configured."""
    if not settings.oidc_issuer:
        return None
    from api.auth.oidc import OidcVerifier  # PyJWT and cryptography: only when configured

    return OidcVerifier(settings.oidc_issuer, settings.oidc_audience,
                        client_claim=settings.oidc_client_claim,
                        scopes_claim=settings.oidc_scopes_claim)


@asynccontextmanager
async def study_flow(settings: Settings, make_model: ModelFactory) -> AsyncIterator[
        tuple[JobStore, StudyStore, SegmentationModel, JobRunner, Routing, Webhooks]]:
    """The job store, the study files, the model, and what works on them: the job runner,
    the delivery of results to the PACS, the webhooks, the retention sweep; stopped in
    reverse."""
    jobs = open_job_store(settings)
    store = open_study_store(settings)
    model = make_model(settings)
    decoder = DecoderPool(settings.decode_workers)
    pipeline = StudyPipeline(model=model, store=store, jobs=jobs, decoder=decoder,
                             settings=settings)
    destinations = load_destinations(settings.destinations)
    delivery = DeliveryWorker(jobs, store, destinations, settings)
    webhooks = load_webhooks(settings.webhooks, settings.webhook_allow)
    callbacks = WebhookWorker(jobs, store, webhooks, settings.public_url)
    leases = Leases(settings.job_lease_s, settings.job_heartbeat_s, settings.job_max_attempts)
    runner = JobRunner(jobs, pipeline.run, settings.concurrent_jobs, leases=leases,
                       deliver_to=destinations.for_client, on_success=delivery.wake,
                       has_upload=store.exists,
                       callbacks=Callbacks(webhooks.url_of, callbacks.wake))
    # An API replica queues jobs and answers reads; workers (or the one process) run them.
    runs_jobs = settings.role != "api"
    sweeper: asyncio.Task[None] | None = None
    if runs_jobs:
        delivery.start()
        callbacks.start()
        runner.start()  # it claims what a stopped process gave back, or a dead one's lease left
        sweeper = asyncio.create_task(sweep_forever(jobs, store, settings.job_retention_h))
    try:
        yield jobs, store, model, runner, destinations.for_client, webhooks
    finally:
        if sweeper is not None:
            sweeper.cancel()
        await runner.stop()
        await delivery.stop()
        await callbacks.stop()
        decoder.shutdown(wait=True, cancel_futures=True)
        await model.close()
        jobs.close()


@contextmanager
def metrics_served(settings: Settings, jobs: JobStore) -> Iterator[None]:
    """This process's metrics on their own port while the app runs (``port:NNNN``)."""
    port = settings.metrics_port
    if port is None:
        yield
        return
    with metrics_listener(settings.host, port, jobs):
        yield


def create_app(
    settings: Settings | None = None, model_factory: ModelFactory | None = None
) -> FastAPI:
    """Build the app; tests pass their own settings and a fake model factory."""
    settings = settings or get_settings()
    make_model = model_factory or triton_model

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Services]]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        guard_plain_routes(app.routes, settings.auth_open_paths)
        oidc = oidc_verifier(settings)
        keys = open_key_store(settings.data_dir, settings.database_url, settings.key_pepper_hex)
        links = SignedLinks(LinkSigner(link_keys(settings.link_keys, settings.data_dir)),
                            settings.link_ttl_s)
        try:
            async with study_flow(settings, make_model) as flow:
                jobs, store, model, runner, routes, webhooks = flow
                with metrics_served(settings, jobs):
                    yield {"services": Services(settings, jobs, store, model, runner, keys,
                                                oidc, links, deliver_to=routes,
                                                check_callback=webhooks.check_callback)}
        finally:
            keys.close()
            if oidc is not None:
                await oidc.close()

    app = Gateway(
        # JSON logs: the request's line is ours (uvicorn's has no duration nor request id).
        access_lines=settings.log_format == "json",
        title="bonemets", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
        docs_url=None, redoc_url=None,  # install_docs: the same pages, without a CDN
        responses=problem_responses(500),  # any route, on an unexpected error
        # Every route checks credentials unless its path is open (api/http/auth.py).
        dependencies=[Depends(authenticate)],
    )
    install_problem_handlers(app)
    if settings.auth == "on":
        install_security_docs(app, settings.auth_open_paths)
    install_docs(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    install_quotas(app, settings)
    install_audit(app, settings)  # last: outermost, so it sees every refusal
    app.include_router(health.router)
    if settings.metrics == "route":  # every role: each process is scraped on its own
        app.include_router(metrics.router)
    if settings.role != "worker":  # a worker answers its probes, nothing else
        for router in (models, studies, dicomweb, reports, deliveries, viewer):
            app.include_router(router.router)
    return app

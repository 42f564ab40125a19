"""Typed access to the clients the lifespan created, for route signatures."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.config import Settings
from api.inference.protocol import SegmentationModel
from api.study.jobs import JobStore
from api.study.runner import JobRunner
from api.study.services import Services
from api.study.storage import StudyStore


def get_services(request: Request) -> Services:
    services: Services = request.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_model(request: Request) -> SegmentationModel:
    return get_services(request).model


def get_jobs(request: Request) -> JobStore:
    return get_services(request).jobs


def get_store(request: Request) -> StudyStore:
    return get_services(request).store


def get_runner(request: Request) -> JobRunner:
    return get_services(request).runner


def get_app_settings(request: Request) -> Settings:
    return get_services(request).settings


ModelDep = Annotated[SegmentationModel, Depends(get_model)]
JobsDep = Annotated[JobStore, Depends(get_jobs)]
StoreDep = Annotated[StudyStore, Depends(get_store)]
RunnerDep = Annotated[JobRunner, Depends(get_runner)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]

"""The JSON the API speaks. Every model carries an example for the OpenAPI page.

:mod:`api.schemas.result` is a study's result; :mod:`api.schemas.envelopes` the job
document, problems and health around it.
"""

from api.schemas.envelopes import (
    Delivery,
    Health,
    Problem,
    Progress,
    StudyJob,
    StudyList,
    StudySummary,
    WebhookDelivery,
)
from api.schemas.result import (
    Box2D,
    Box3D,
    Lesion,
    LesionBox,
    ModelOut,
    SliceBox,
    SliceResult,
    StudyResult,
    Timings,
    WindowOut,
)

__all__ = [
    "Box2D", "Box3D", "Delivery", "Health", "Lesion", "LesionBox", "ModelOut", "Problem",
    "Progress", "SliceBox", "SliceResult", "StudyJob", "StudyList", "StudyResult", "StudySummary",
    "Timings", "WebhookDelivery",
    "WindowOut",
]

"""The settings of what operators watch: the Prometheus metrics endpoint
(docs/operations.md). ``Settings`` has them all."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings


class ObservabilitySettings(BaseSettings):
    """Where the metrics are served (``BONEMETS_*``, read by ``Settings``)."""

    metrics: str = Field(
        default="route", pattern=r"^(route|off|port:[0-9]{1,5})$",
        description="the Prometheus metrics of this process: `route`, GET /metrics on the"
        " gateway's port (credentials with the metrics:read scope, unless /metrics is in"
        " auth_open_paths); `port:NNNN`, a plain listener of its own on `host`, port NNNN,"
        " for a network only the scraper reaches; `off`",
    )

    @field_validator("metrics")
    @classmethod
    def _port_in_range(cls, value: str) -> str:
        mode, _, port = value.partition(":")
        if mode == "port" and not 1 <= int(port) <= 65535:
            raise ValueError("the metrics port must be 1 to 65535")
        return value

    @property
    def metrics_port(self) -> int | None:
        """The metrics listener's own port (``port:NNNN``), else None."""
        mode, _, port = self.metrics.partition(":")
        return int(port) if mode == "port" else None

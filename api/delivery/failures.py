"""How a delivery attempt fails: for now (tried again later) or for good."""

from __future__ import annotations


class DeliveryFailed(Exception):
    """An attempt that did not deliver; ``permanent`` when sending the same objects again to
    the same destination cannot succeed (they are refused as such), else it is retried."""

    def __init__(self, detail: str, permanent: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.permanent = permanent

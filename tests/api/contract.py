"""Every answer of the API checked against the OpenAPI document the app publishes.

:class:`CheckedClient` is a ``TestClient`` that, for each response, finds the operation of
its path and method in ``app.openapi()``, requires the status to be documented there, the
media type to be one documented for that status, and the body to validate against its
schema (``$ref``s resolved; objects closed, so an undocumented field fails too). Answers
outside any operation (an unknown path, a method a path lacks) must be problem+json.

Once started (``with CheckedClient(app) as client``), it sends an API key of its own, made in
the app's key store with the scopes it is given (``scopes=None``: anonymous).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Self

import jsonschema
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from prometheus_client.parser import text_string_to_metric_families

from api.auth.principal import Scope

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DICOM_PREAMBLE_END = 128  # a Part 10 file: 128 bytes of preamble, then "DICM"
# Pages outside the API that the app serves itself (the OpenAPI document and its viewers).
OUTSIDE_THE_API = re.compile(r"^/(openapi\.json|docs|redoc)(/.*)?$")

Pair = tuple[str, str, str]  # path template, method, status
# What an ordinary client holds: everything but admin (every client's studies).
CLIENT_SCOPES = (Scope.WRITE, Scope.READ, Scope.DELETE)


class Contract:
    """The app's OpenAPI document, ready to check answers against."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.components = _closed(spec.get("components", {}))
        self._paths = [(_pattern(template), template) for template in spec["paths"]]

    def pairs(self) -> set[Pair]:
        """Every (path, method, status) the document declares."""
        return {(path, method, status) for path, operations in self.spec["paths"].items()
                for method, operation in operations.items()
                for status in operation["responses"]}

    def check(self, response: Response) -> Pair | None:
        """Fail unless ``response`` is what the document says; the pair it exercised, if any."""
        path = response.request.url.path
        method = response.request.method.lower()
        template = next((t for pattern, t in self._paths if pattern.match(path)), None)
        operation = self.spec["paths"].get(template, {}).get(method) if template else None
        if operation is None:
            if not OUTSIDE_THE_API.match(path):
                assert response.status_code >= 400, f"{method} {path}: no operation answers it"
                assert _media(response) == "application/problem+json"
                self._validate(response, {"$ref": "#/components/schemas/Problem"})
            return None
        status = str(response.status_code)
        documented = operation["responses"].get(status)
        assert documented is not None, f"{method} {template} answered {status}, undocumented"
        content = documented.get("content")
        if not content:
            assert response.content == b"", f"{method} {template} {status}: body not documented"
            return (template, method, status)
        media = _media(response)
        assert media in content, f"{method} {template} {status}: {media} not in {list(content)}"
        schema = content[media].get("schema")
        assert schema is not None, f"{method} {template} {status} {media}: no schema"
        if media == "image/png":
            assert response.content.startswith(PNG_SIGNATURE)
        elif media == "application/dicom":
            assert response.content[DICOM_PREAMBLE_END:DICOM_PREAMBLE_END + 4] == b"DICM"
        elif media == "text/html":
            assert response.text.lstrip().lower().startswith("<!doctype html>")
        elif media == "text/plain":  # the one plain-text answer: Prometheus's format
            assert list(text_string_to_metric_families(response.text))
        else:
            self._validate(response, schema)
        return (template, method, status)

    def _validate(self, response: Response, schema: dict[str, Any]) -> None:
        rooted = {**schema, "components": self.components}
        try:
            jsonschema.validate(response.json(), rooted, cls=jsonschema.Draft202012Validator)
        except jsonschema.ValidationError as exc:
            request = response.request
            raise AssertionError(
                f"{request.method} {request.url.path} {response.status_code}: the body breaks "
                f"the published schema: {exc.message} at {list(exc.absolute_path)}"
            ) from exc


def _pattern(template: str) -> re.Pattern[str]:
    """``/v1/studies/{job_id}`` as a regular expression matching one segment per parameter."""
    literal = re.split(r"\{[^/}]+\}", template)
    return re.compile("^" + "[^/]+".join(re.escape(part) for part in literal) + "$")


def example_path(template: str) -> str:
    """A URL for a path template, each ``{parameter}`` filled with ``1``."""
    return re.sub(r"\{[^/}]+\}", "1", template)


def _media(response: Response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip()


def _closed(components: dict[str, Any]) -> dict[str, Any]:
    """The components with every object schema closed to properties it does not declare."""
    closed = copy.deepcopy(components)
    for schema in closed.get("schemas", {}).values():
        if "properties" in schema:
            schema.setdefault("additionalProperties", False)
    return closed


class CheckedClient(TestClient):
    """A TestClient whose every answer must match the app's published OpenAPI document, and
    that sends an API key for ``client_name`` with ``scopes`` (None: no credentials)."""

    def __init__(self, app: FastAPI, *args: Any, seen: set[Pair] | None = None,
                 scopes: Iterable[str] | None = CLIENT_SCOPES, client_name: str = "tests",
                 **kwargs: Any) -> None:
        super().__init__(app, *args, **kwargs)
        self.contract = Contract(app.openapi())
        self.seen: set[Pair] = set() if seen is None else seen
        self.scopes = None if scopes is None else frozenset(scopes)
        self.client_name = client_name
        self.api_key: str | None = None

    def __enter__(self) -> Self:
        super().__enter__()
        if self.scopes is not None:
            self.api_key = new_key(self, self.client_name, self.scopes)
            self.headers["Authorization"] = f"Bearer {self.api_key}"
        return self

    @contextmanager
    def sending(self, authorization: str | None) -> Iterator[None]:
        """Requests in the block carry this Authorization header (None: none at all)."""
        saved = self.headers.pop("Authorization", None)
        if authorization is not None:
            self.headers["Authorization"] = authorization
        try:
            yield
        finally:
            self.headers.pop("Authorization", None)
            if saved is not None:
                self.headers["Authorization"] = saved

    def request(self, *args: Any, **kwargs: Any) -> Response:  # type: ignore[override]
        response = super().request(*args, **kwargs)
        pair = self.contract.check(response)
        if pair is not None:
            self.seen.add(pair)
        return response


def new_key(client: TestClient, name: str, scopes: Iterable[str]) -> str:
    """A fresh API key in the running app's key store (the client must be started)."""
    _, key = client.app_state["services"].keys.create(name, scopes)
    return str(key)

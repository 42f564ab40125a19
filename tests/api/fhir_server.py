"""A FHIR server for tests: a real HTTP server on a free port that parses each arriving
transaction with fhir.resources (R4B) and answers a transaction-response, or the statuses a
test queues first."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from fhir.resources.R4B.bundle import Bundle

FHIR_JSON = "application/fhir+json"


class FhirServer:
    """``received``: each transaction Bundle that parsed; ``refused``: why others did not;
    ``statuses``: answers given (in order) before any transaction is taken."""

    def __init__(self) -> None:
        self.received: list[Bundle] = []
        self.refused: list[str] = []
        self.statuses: list[int] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/fhir"
        # A short poll: shutdown() waits for it, and each test stops a server.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def answer(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.headers.append(headers)
            if self.statuses:
                status = self.statuses.pop(0)
                return status, _outcome(f"answered {status} as the test asked")
            try:
                bundle = Bundle.model_validate_json(body)
            except ValueError as exc:
                self.refused.append(str(exc))
                return 400, _outcome("not a FHIR R4 Bundle")
            if bundle.type != "transaction":
                self.refused.append(f"a {bundle.type} Bundle")
                return 400, _outcome("not a transaction")
            self.received.append(bundle)
        return 200, _transaction_response(bundle)


def _handler(server: FhirServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, answer = server.answer(body, dict(self.headers.items()))
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", FHIR_JSON)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


def _outcome(text: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "processing", "diagnostics": text}]}


def _transaction_response(bundle: Bundle) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": [
        {"response": {"status": "201 Created",
                      "location": f"{entry.resource.get_resource_type()}/{k}/_history/1"}}
        for k, entry in enumerate(bundle.entry or [], start=1)]}

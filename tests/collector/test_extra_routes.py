"""``ExtraRoute``: a POST endpoint of a package above the collector, served on the receiver's port.

Over real HTTP on 127.0.0.1: the transport refuses what it must (token, method, size, encoding) before the
handler sees anything, hands the handler the exact body and the request's headers, answers what the handler
says, and turns a failing handler into a 500 without taking the receiver down.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping

import pytest

from qfleet.collector.consumer import MemoryConsumer
from qfleet.collector.http_app import ExtraRoute
from qfleet.collector.transport import HttpTransport, TransportConfig
from tests.collector.otlp_payloads import get, metric, post, scrape

TOKEN = "extra-route-token"
PATH = "/api/v1/test-intake"


class Recorder:
    """Answers 202 with the body's length, or raises when the body says so."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, dict[str, str]]] = []

    def __call__(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        if body == b"boom":
            raise RuntimeError("handler bug")
        self.calls.append((body, dict(headers)))
        return 202, json.dumps({"got": len(body)}).encode()


@pytest.fixture
def served() -> Iterator[tuple[tuple[str, int], Recorder]]:
    rec = Recorder()
    t = HttpTransport(MemoryConsumer(), TransportConfig(port=0, token=TOKEN, max_body_bytes=1000),
                      extra_routes=[ExtraRoute(PATH, rec)])
    t.start()
    try:
        yield t.address, rec
    finally:
        t.stop(timeout_s=5)


def test_the_handler_gets_the_exact_body_and_headers_and_its_answer_is_sent(served) -> None:
    address, rec = served
    body = json.dumps({"version": "4", "alerts": []}).encode()
    r = post(address, PATH, body, token=TOKEN, content_type="application/json", headers={"X-Seen": "yes"})
    assert (r.status, json.loads(r.body)) == (202, {"got": len(body)})
    assert r.headers["Content-Type"].startswith("application/json")
    [(got, headers)] = rec.calls
    assert got == body and headers["x-seen"] == "yes" and headers["authorization"] == f"Bearer {TOKEN}"
    assert metric(scrape(address), "qfleet_collector_requests_total", path=PATH, code="202") == 1


@pytest.mark.parametrize(("token", "method", "extra", "body", "code"), [
    (None, "POST", {}, b"{}", 401),
    ("wrong", "POST", {}, b"{}", 401),
    (TOKEN, "POST", {}, b"x" * 1001, 413),
    (TOKEN, "POST", {"Content-Encoding": "gzip"}, b"{}", 415),
])
def test_refusals_never_reach_the_handler(served, token: str | None, method: str, extra: dict[str, str],
                                          body: bytes, code: int) -> None:
    address, rec = served
    r = post(address, PATH, body, token=token, content_type="application/json", headers=extra)
    assert r.status == code, r
    assert rec.calls == []


def test_get_is_405_and_a_failing_handler_is_500_while_the_receiver_keeps_serving(served) -> None:
    address, rec = served
    assert get(address, PATH).status == 405
    assert post(address, PATH, b"boom", token=TOKEN, content_type="application/json").status == 500
    assert post(address, PATH, b"{}", token=TOKEN, content_type="application/json").status == 202
    assert get(address, "/healthz").status == 200
    assert len(rec.calls) == 1

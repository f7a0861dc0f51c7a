"""``/openapi.json`` describes both API families, and the running service keeps to it:
schemathesis generates requests from the document (with this test's tokens and
application filled in, so they get past authentication) and checks every answer
against it. ``/docs`` renders it with vendored files only."""

from __future__ import annotations

import copy
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support import Service

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_the_document_names_every_method_and_refuses_unknown_fields(svc: Service) -> None:
    from pushtrack.api.app import JSON13, V2

    doc = svc.http.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {f"/json/1.3/{m}" for m in JSON13} | {
        f"/api/v2/{m}" for m in V2
    } | {"/api/v2/events/stream"}
    stream = doc["paths"]["/api/v2/events/stream"]["get"]
    assert {p["name"] for p in stream["parameters"]} == {
        "application",
        "hwid",
        "message",
        "status",
        "Last-Event-ID",
    }
    for name, schema in doc["components"]["schemas"].items():
        if schema.get("type") == "object":
            assert schema.get("additionalProperties") is False, name


def test_docs_page_uses_only_vendored_assets(svc: Service) -> None:
    page = svc.http.get("/docs")
    assert page.status_code == 200
    assert "http" not in page.text.replace("http-equiv", "")  # no absolute URL at all
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "init.js"):
        resp = svc.http.get(f"/docs/static/{asset}")
        assert resp.status_code == 200, asset
        assert len(resp.content) > 40


def _pin(node: Any, values: dict[str, str]) -> Any:
    """The document with ``auth`` and ``application`` properties pinned to real values."""
    if isinstance(node, dict):
        out = {k: _pin(v, values) for k, v in node.items()}
        props = out.get("properties")
        if isinstance(props, dict):
            for key, value in values.items():
                if key in props:
                    props[key] = {"enum": [value]}
        return out
    if isinstance(node, list):
        return [_pin(v, values) for v in node]
    return node


@pytest.fixture(scope="module")
def live(shared: Service) -> tuple[Service, Any]:
    svc = shared.fresh_account()
    svc.register("oa-device")
    svc.send(devices=["oa-device"])
    doc = svc.http.get("/openapi.json").json()
    pinned = _pin(
        copy.deepcopy(doc),
        {"auth": svc.server_token, "application": svc.app.code, "application_code": svc.app.code},
    )
    return svc, schemathesis.openapi.from_dict(pinned)


def _check(svc: Service, operation: Any, token: str) -> None:
    @hypothesis.settings(
        # every operation is called (the loop below takes each one in the document),
        # each with this many generated requests
        max_examples=8,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.generate],
    )
    @hypothesis.given(case=operation.as_strategy())
    def run(case: Any) -> None:
        headers = {"Authorization": f"Token {token}"}
        case.call_and_validate(base_url=svc.url, headers=headers, checks=CHECKS)

    run()


@pytest.mark.slow
def test_every_answer_keeps_to_the_document(live: tuple[Service, Any]) -> None:
    svc, schema = live
    failures: list[str] = []
    for operation in schema.get_all_operations():
        op = operation.ok()
        device = "device" in str(op.definition.raw.get("tags"))
        try:
            _check(svc, op, svc.device_token if device else svc.server_token)
        except Exception as exc:
            failures.append(f"{op.label}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)

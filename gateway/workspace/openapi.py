"""GET /api/v1/openapi.json: the gateway's HTTP API described as OpenAPI 3.1 (CONTRACT "HTTP").

A static document built from small helpers; a test validates it with openapi-spec-validator
and checks that every registered /api/ route is described.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.core.model import CHANNELS, STATUSES

J = dict[str, Any]
ERRORS = {
    "400": "Bad input; `error.field` names the field",
    "401": "Missing or invalid credentials",
    "403": "Not allowed (role, level, CSRF token or origin)",
    "404": "No such object within the caller's access",
    "409": "A transition the incident's state does not allow",
    "413": "Request body too large",
    "429": "Too many requests",
    "503": "The database is unavailable; retry",
}


def _ref(name: str) -> J:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(code: str) -> J:
    return {
        "description": ERRORS[code],
        "content": {"application/json": {"schema": _ref("Error")}},
    }


def _json(schema: J, description: str = "OK") -> J:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, ok: J, errors: tuple[str, ...], ok_status: str = "200", **extra: Any) -> J:
    responses = {ok_status: ok}
    responses.update({code: _error(code) for code in errors})
    return {"summary": summary, "responses": responses, **extra}


def _object(**properties: J) -> J:
    return {"type": "object", "properties": properties}


_HEALTH = _object(
    status={"type": "string", "enum": ["ok", "degraded"]},
    instance={"type": "string"},
    database={"type": "string", "enum": ["ok", "read_only", "down"]},
)


def _param(name: str, where: str, schema: J, *, required: bool = True) -> J:
    return {"name": name, "in": where, "required": required, "schema": schema}


def _nullable(kind: str, **more: Any) -> J:
    return {"type": [kind, "null"], **more}


TRACKING = {
    "name": "tracking",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^CMW-[0-9]{7,}-[0-9]$"},
}


def _body(properties: J, required: list[str]) -> J:
    schema = {"type": "object", "properties": properties, "required": required}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


TEXT = {"type": "string", "minLength": 1}
OPTIONAL = ("country", "email", "description")  # Click2Call's optional form fields
ACTION_BODIES: dict[str, tuple[str, J | None]] = {
    "claim": ("Take the incident (initial diagnosis; investigation at L2/L3)", None),
    "reply": (
        "Answer the customer through the incident's own channel",
        _body({"text": TEXT, "wait_for_customer": {"type": "boolean"}}, ["text"]),
    ),
    "note": ("Add an internal note (never sent to the customer)", _body({"text": TEXT}, ["text"])),
    "severity": (
        "Change severity (recomputes both SLA due times from registration)",
        _body({"severity": {"enum": ["S1", "S2", "S3", "S4"]}, "reason": TEXT}, ["severity"]),
    ),
    "escalate": (
        "Escalate to L2 or L3 (SLA clocks are kept)",
        _body(
            {"level": {"enum": ["L2", "L3"]}, "team": {"type": "string"}, "reason": TEXT},
            ["level", "reason"],
        ),
    ),
    "resolve": (
        "Resolve with a configured category and a resolution text",
        _body({"category": {"type": "string"}, "resolution": TEXT}, ["category", "resolution"]),
    ),
    "close": ("Close a resolved, categorized incident", None),
    "reopen": ("Reopen a resolved or closed incident", None),
}


def _action(name: str) -> J:
    summary, body = ACTION_BODIES[name]
    op = _op(
        summary,
        _json(_ref("Incident"), "The incident after the action"),
        ("400", "401", "403", "404", "409", "503"),
        parameters=[TRACKING],
        security=[{"bearer": []}, {"session": [], "csrf": []}],
    )
    if body is not None:
        op["requestBody"] = body
    return {"post": op}


def schemas() -> J:
    """The component schemas (CONTRACT "Incidents")."""
    contact: dict[str, Any] = {
        k: _nullable("string") for k in ("name", "email", "phone", "telegram_chat_id")
    }
    contact["claimed"] = {
        "type": "array",
        "items": {"type": "string", "enum": ["name", "email", "phone"]},
        "description": "Fields the customer typed (a form), not proven by the channel",
    }
    sla = {
        "attention_due": {"type": "string", "format": "date-time"},
        "solution_due": {"type": "string", "format": "date-time"},
        "attended_at": _nullable("string", format="date-time"),
        "resolved_at": _nullable("string", format="date-time"),
        "attention_breached": {"type": "boolean"},
        "solution_breached": {"type": "boolean"},
    }
    summary = {
        "tracking": {"type": "string"},
        "channel": {"enum": list(CHANNELS)},
        "country": {"type": "string"},
        "line": {"type": "string"},
        "level": {"enum": ["L1", "L2", "L3"]},
        "team": _nullable("string"),
        "severity": {"enum": ["S1", "S2", "S3", "S4"]},
        "status": {"enum": list(STATUSES)},
        "after_hours": {"type": "boolean"},
        "subject": _nullable("string"),
        "description": {"type": "string"},
        "contact": {"type": "object", "properties": contact},
        "occurred_at": {"type": "string", "format": "date-time"},
        "registered_at": {"type": "string", "format": "date-time"},
        "registered_by": {"type": "string"},
        "claimed_by": _nullable("string"),
        "sla": {"type": "object", "properties": sla},
        "category": _nullable("string"),
        "resolution": _nullable("string"),
        "csat": {**_nullable("integer"), "minimum": 1, "maximum": 5},
        "routing": {"type": "object"},
    }
    attachment = {
        "filename": {"type": "string"},
        "content_type": {"type": "string"},
        "size": {"type": "integer"},
        "url": {"type": "string"},
    }
    message = {
        "direction": {"enum": ["in", "out", "note"]},
        "channel": {"type": "string"},
        "author": {"type": "string"},
        "body": {"type": "string"},
        "at": {"type": "string", "format": "date-time"},
        "attachments": {"type": "array", "items": {"type": "object", "properties": attachment}},
    }
    event = {
        "at": {"type": "string", "format": "date-time"},
        "actor": {"type": "string"},
        "kind": {"type": "string"},
        "detail": {"type": "object"},
    }
    error_body = {
        "code": {"type": "string"},
        "message": {"type": "string"},
        "field": {"type": "string"},
    }
    return {
        "IncidentSummary": {"type": "object", "properties": summary, "required": ["tracking"]},
        "Incident": {
            "allOf": [
                _ref("IncidentSummary"),
                {
                    "type": "object",
                    "properties": {
                        "messages": {"type": "array", "items": {"properties": message}},
                        "events": {"type": "array", "items": {"properties": event}},
                    },
                },
            ]
        },
        "Error": {
            "type": "object",
            "properties": {
                "error": {"type": "object", "properties": error_body, "required": ["code"]}
            },
            "required": ["error"],
        },
    }


def document() -> J:
    """The whole OpenAPI document."""
    agent = ("401", "403", "503")
    names = ("level", "country", "status", "channel", "severity", "limit")
    query = [_param(n, "query", {"type": "string"}, required=False) for n in names]
    paths: J = {
        "/healthz": {
            "get": {
                "summary": "Health: read_only/degraded when writes fail; 503 only when down",
                "security": [],
                "responses": {
                    "200": _json(_HEALTH),
                    "503": _json(_HEALTH, "The database cannot be reached"),
                },
            }
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics",
                {"description": "Prometheus text format", "content": {"text/plain": {}}},
                (),
                security=[],
            )
        },
        "/api/v1/queue": {
            "get": _op(
                "Open incidents of a level, most urgent SLA deadline first",
                _json(_object(incidents={"type": "array", "items": _ref("IncidentSummary")})),
                ("400", *agent),
                parameters=query,
            )
        },
        "/api/v1/incidents/{tracking}": {
            "get": _op(
                "One incident, whole",
                _json(_ref("Incident")),
                ("404", *agent),
                parameters=[TRACKING],
            )
        },
        "/api/v1/attachments/{token}": {
            "get": _op(
                "An attachment: a download (nosniff); with preview=1, a PNG, JPEG, GIF or WebP"
                " whose bytes match its type is served inline as that image",
                {
                    "description": "The file",
                    "content": {"application/octet-stream": {}, "image/*": {}},
                },
                ("404", *agent),
                parameters=[
                    _param("token", "path", {"type": "string"}),
                    _param("preview", "query", {"type": "string", "enum": ["1"]}, required=False),
                ],
            )
        },
        "/api/v1/click2call": {
            "post": _op(
                "The website's Click2Call form",
                _json(
                    _object(
                        tracking={"type": "string"},
                        status={"enum": ["calling", "scheduled"]},
                        scheduled_for=_nullable("string"),
                    )
                ),
                ("400", "403", "413", "429", "503"),
                ok_status="202",
                security=[],
                requestBody=_body(
                    {"name": TEXT, "phone": TEXT, **{key: {"type": "string"} for key in OPTIONAL}},
                    ["name", "phone"],
                ),
            )
        },
        "/api/v1/reports/sla": {
            "get": _op(
                "Monthly SLA compliance and penalties per site (supervisors); each line's month"
                " in its own zone unless tz; CSV: the breaches, or sheet=penalties",
                {
                    "description": "The report",
                    "content": {"application/json": {"schema": {"type": "object"}}, "text/csv": {}},
                },
                ("400", *agent),
                parameters=[
                    _param("month", "query", {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}),
                    _param("tz", "query", {"type": "string"}, required=False),
                    _param("format", "query", {"enum": ["json", "csv"]}, required=False),
                    _param("sheet", "query", {"enum": ["breaches", "penalties"]}, required=False),
                ],
            )
        },
        "/api/v1/quarantine": {
            "get": _op(
                "Held items: backscatter, failed processing, refused mail (supervisors)",
                _json(
                    _object(
                        items={
                            "type": "array",
                            "items": _object(
                                id={"type": "integer"},
                                channel={"type": "string"},
                                received_at={"type": "string"},
                                reason={
                                    "enum": [
                                        "unmatched_bounce",
                                        "processing_failed",
                                        "auth_refused",
                                    ]
                                },
                                summary={"type": "string"},
                            ),
                        }
                    )
                ),
                agent,
            )
        },
        "/api/v1/quarantine/{id}/release": {
            "post": _op(
                "Process a held item as a normal contact (supervisors)",
                _json(
                    _object(
                        id={"type": "integer"},
                        state={"const": "released"},
                        tracking={"type": "string"},
                    )
                ),
                ("404", *agent),
                parameters=[_param("id", "path", {"type": "integer"})],
            )
        },
        "/api/v1/quarantine/{id}/discard": {
            "post": _op(
                "Drop a held item (supervisors)",
                _json(_object(id={"type": "integer"}, state={"const": "discarded"})),
                ("404", *agent),
                parameters=[_param("id", "path", {"type": "integer"})],
            )
        },
        "/api/v1/openapi.json": {
            "get": _op("This document", _json({"type": "object"}), (), security=[])
        },
    }
    for name in ACTION_BODIES:
        paths[f"/api/v1/incidents/{{tracking}}/{name}"] = _action(name)
    paths.update(_noc_paths(agent))
    return {
        "openapi": "3.1.0",
        "info": {"title": "CallMyWay intake gateway", "version": "1"},
        "paths": paths,
        "security": [{"bearer": []}, {"session": []}],
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "cmw_agent"},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
            },
        },
    }


def _noc_paths(agent: tuple[str, ...]) -> J:
    """Search, forensics and alarms (README "The NOC")."""
    page = [
        _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 100}, required=False),
        _param("cursor", "query", {"type": "string"}, required=False),
    ]
    listed = {"type": "array", "items": {"type": "object"}}
    cursor = _nullable("string")
    text = {"type": "string"}
    return {
        "/api/v1/incidents": {
            "get": _op(
                "Incidents by tracking number, name, email, phone or text, newest first",
                _json(
                    _object(
                        q=text,
                        incidents={"type": "array", "items": _ref("IncidentSummary")},
                        next=cursor,
                    )
                ),
                ("400", *agent),
                parameters=[_param("q", "query", {"type": "string", "minLength": 3}), *page],
            )
        },
        "/api/v1/events": {
            "get": _op(
                "The event history by tracking, contact, channel, kind and time range",
                _json(_object(events=listed, next=cursor)),
                ("400", *agent),
                parameters=[
                    _param(n, "query", text, required=False)
                    for n in ("tracking", "contact", "channel", "kind", "from", "to")
                ]
                + page,
            )
        },
        "/api/v1/incidents/{tracking}/record": {
            "get": _op(
                "One incident's complete record: messages, attachments, events, deliveries",
                _json({"type": "object"}),
                ("404", *agent),
                parameters=[TRACKING],
            )
        },
        "/api/v1/alarms": {
            "get": _op(
                "NOC alarm episodes, newest first (supervisors)",
                _json(_object(alarms=listed, next=cursor)),
                ("400", *agent),
                parameters=[
                    _param("state", "query", {"enum": ["all", "open"]}, required=False),
                    *page,
                ],
            )
        },
    }


async def openapi_json(request: web.Request) -> web.Response:
    """GET /api/v1/openapi.json."""
    return web.json_response(document())


def setup(app: web.Application) -> None:
    """Register the route."""
    app.router.add_get("/api/v1/openapi.json", openapi_json)

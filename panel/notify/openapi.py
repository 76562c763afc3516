"""The OpenAPI description of the notification API (merged into ``/api/openapi.json``)."""

from __future__ import annotations

from typing import Any

from panel.notify.acks import MAX_SNOOZE_MINUTES
from panel.notify.matchers import OPS
from panel.notify.silences import MAX_WINDOW_MINUTES


def schemas() -> dict[str, Any]:
    from panel.api.openapi import BOOLEAN, INTEGER, N_INTEGER, N_STRING, N_TIMESTAMP, NUMBER, STRING, TIMESTAMP
    from panel.api.openapi import _nullable as nullable
    from panel.api.openapi import _object as obj
    from panel.api.openapi import _ref as ref

    matcher = obj({"name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                   "op": {"type": "string", "enum": list(OPS)}, "value": STRING})
    recurrence = obj({"weekdays": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 6},
                                   "description": "Monday = 0"},
                      "start": {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$",
                                "description": "UTC"},
                      "duration_minutes": {"type": "integer", "minimum": 1, "maximum": MAX_WINDOW_MINUTES}})
    return {
        "AlertQuiet": obj({"id": INTEGER, "state": {"type": "string", "enum": ["pending", "firing"]},
                           "acknowledgedAt": N_TIMESTAMP, "acknowledgedBy": N_STRING, "snoozedUntil": N_TIMESTAMP,
                           "snoozedBy": N_STRING}),
        "SilenceMatcher": matcher,
        "SilenceRecurrence": recurrence,
        "Silence": obj({
            "id": INTEGER, "matchers": {"type": "array", "items": ref("SilenceMatcher")},
            "startsAt": TIMESTAMP, "endsAt": N_TIMESTAMP, "recurrence": nullable(ref("SilenceRecurrence")),
            "window": nullable(obj({"startsAt": TIMESTAMP, "endsAt": TIMESTAMP})),
            "comment": STRING, "source": {"type": "string", "enum": ["user", "api", "maintenance"]},
            "createdBy": STRING, "createdAt": TIMESTAMP, "expiredAt": N_TIMESTAMP, "expiredBy": N_STRING,
            "state": {"type": "string", "enum": ["active", "pending", "scheduled", "expired"]},
        }),
        "SilenceList": obj({"silences": {"type": "array", "items": ref("Silence")}}),
        "Integration": obj({
            "id": INTEGER, "name": STRING, "type": STRING, "title": STRING, "enabled": BOOLEAN, "provisioned": BOOLEAN,
            "settings": {"type": "object", "additionalProperties": True, "description": "settings that are not secret"},
            "destination": {"type": "string", "description": "where it sends, without secrets"},
            "secrets": {"type": "object", "additionalProperties": BOOLEAN, "description": "which secrets are set"},
            "secretsProblem": N_STRING, "updatedAt": TIMESTAMP, "updatedBy": STRING,
        }),
        "IntegrationList": obj({"integrations": {"type": "array", "items": ref("Integration")}}),
        "DeliveryAttempt": obj({
            "status": {"type": "string", "enum": ["sent", "retrying", "failed", "duplicate", "gone"]},
            "notification": INTEGER, "attempt": INTEGER, "code": N_INTEGER, "error": N_STRING,
            "retryable": BOOLEAN, "duration_ms": NUMBER,
        }, extra=True),
        "Delivery": obj({
            "id": INTEGER, "notification_id": INTEGER, "integration_id": N_INTEGER, "integration_name": STRING,
            "attempt": INTEGER, "status": {"type": "string", "enum": ["sent", "retrying", "failed"]},
            "response_code": N_INTEGER, "error": N_STRING, "duration_ms": NUMBER, "at": STRING,
            "kind": {"type": "string", "enum": ["alerts", "test"]}, "route_name": N_STRING, "severity": N_STRING,
            "firing": INTEGER, "resolved": INTEGER, "notification_status": STRING, "idempotency_key": STRING,
        }),
        "DeliveryList": obj({"deliveries": {"type": "array", "items": ref("Delivery")}}),
    }


def paths() -> dict[str, Any]:
    from panel.api.openapi import _error as error
    from panel.api.openapi import _ok as ok
    from panel.api.openapi import _operation

    def op(*args, **kwargs) -> dict[str, Any]:
        out = _operation(*args, **kwargs)
        out["tags"] = ["alerts"]
        return out

    def id_param(name: str, maximum: int = 2**63 - 1) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True,
                "schema": {"type": "integer", "minimum": 1, "maximum": maximum}}

    not_open = error("The alert is resolved already")
    return {
        "/api/admin/alerts/acknowledge/{alert_id}": {"post": op(
            "Acknowledge an open alert: no more notifications or repeats for it; its resolution is still sent",
            "acknowledgeAlert", {"200": ok("The alert", "AlertQuiet"), "404": error("No such alert"), "409": not_open},
            role="operator", parameters=[id_param("alert_id")])},
        "/api/admin/alerts/snooze/{alert_id}": {"post": {**op(
            "Snooze an open alert for some minutes; notified again if it still fires then", "snoozeAlert",
            {"200": ok("The alert", "AlertQuiet"), "400": error("minutes missing or out of range"),
             "404": error("No such alert"), "409": not_open},
            role="operator", parameters=[id_param("alert_id")]),
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["minutes"],
                "properties": {"minutes": {"type": "integer", "minimum": 1, "maximum": MAX_SNOOZE_MINUTES}}}}}}}},
        "/api/admin/silences": {
            "get": op("Silences: those in force or to come (state=live, default) or also the ended ones (state=all)",
                      "listSilences", {"200": ok("Silences", "SilenceList"), "400": error("Unknown state")},
                      parameters=[{"name": "state", "in": "query", "required": False,
                                   "schema": {"type": "string", "enum": ["live", "all"], "default": "live"}}]),
            "post": {**op("Create a silence: one-off (endsAt) or weekly (recurrence, UTC)", "createSilence",
                          {"201": ok("The silence", "Silence"), "400": error("A field is not valid (named first)")},
                          role="operator"),
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "type": "object", "required": ["matchers"], "additionalProperties": False,
                         "properties": {
                             "matchers": {"type": "array", "minItems": 1,
                                          "items": {"$ref": "#/components/schemas/SilenceMatcher"}},
                             "startsAt": {"type": "string", "format": "date-time", "description": "default now"},
                             "endsAt": {"type": "string", "format": "date-time"},
                             "comment": {"type": "string", "maxLength": 500},
                             "recurrence": {"$ref": "#/components/schemas/SilenceRecurrence"}}}}}}},
        },
        "/api/admin/silences/{silence_id}": {"delete": op(
            "Expire a silence now: what it held back and still fires is notified", "expireSilence",
            {"200": ok("The silence, expired (expiredNow: false if it had ended before)", "Silence"),
             "404": error("No such silence")}, role="operator", parameters=[id_param("silence_id")])},
        "/api/admin/integrations": {"get": op(
            "Notification channels, without their secrets", "listIntegrations",
            {"200": ok("Channels", "IntegrationList")}, role="admin")},
        "/api/admin/integrations/{integration_id}/test": {"post": op(
            "Send a test notification to a channel now and return the attempt", "testIntegration",
            {"200": ok("The delivery attempt (status sent or failed)", "DeliveryAttempt"),
             "404": error("No such channel")}, role="admin", parameters=[id_param("integration_id", 2**31 - 1)])},
        "/api/admin/deliveries": {"get": op(
            "Delivery attempts, newest first", "listDeliveries",
            {"200": ok("Attempts", "DeliveryList"), "400": error("A filter is not a whole number or out of range")},
            role="admin", parameters=[
                {"name": "integration", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}},
                {"name": "before", "in": "query", "required": False, "description": "only attempts with a lower id",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}}])},
    }

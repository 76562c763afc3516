"""The OpenAPI description of ``/api/admin/alerts`` (merged into ``/api/openapi.json``)."""

from __future__ import annotations

from typing import Any

from panel.alerts.queries import MAX_LIMIT, STATES
from panel.alerts.types import TYPES
from panel.alerts.types.base import COMPONENTS, SEVERITIES


def schemas() -> dict[str, Any]:
    from panel.api.openapi import BOOLEAN, INTEGER, N_NUMBER, N_STRING, N_TIMESTAMP, STRING, TIMESTAMP
    from panel.api.openapi import _nullable as nullable
    from panel.api.openapi import _object as obj
    from panel.api.openapi import _ref as ref

    labels = {"type": "object", "additionalProperties": STRING}
    state = {"type": "string", "enum": list(STATES)}
    alert = obj({
        "id": INTEGER, "rule": STRING, "rule_id": INTEGER, "rule_type": {"type": "string", "enum": list(TYPES)},
        "fingerprint": {"type": "string", "description": "the rule's label set: one open alert per rule and "
                                                         "fingerprint; a new episode is a new alert"},
        "state": state, "severity": {"type": "string", "enum": list(SEVERITIES)},
        "labels": {**labels, "description": "alertname, rule_type, severity, host, component and what it "
                                            "watches (mount, pool, container...)"},
        "annotations": {**labels, "description": "summary, description (runbook)"},
        "value": N_NUMBER, "value_text": STRING,
        "active_since": {**TIMESTAMP, "description": "when the condition was first seen (pending since)"},
        "fired_at": N_TIMESTAMP, "resolved_at": N_TIMESTAMP, "last_eval_at": TIMESTAMP,
        "acknowledged_at": N_TIMESTAMP, "acknowledged_by": N_STRING, "snoozed_until": N_TIMESTAMP,
        "snoozed_by": N_STRING,
    })
    return {
        "Alert": alert,
        "AlertList": obj({
            "alerts": {"type": "array", "items": ref("Alert")}, "total": INTEGER, "limit": INTEGER,
            "offset": INTEGER, "critical": INTEGER, "warning": INTEGER, "info": INTEGER, "pending": INTEGER,
            "layout": {"type": "string", "description": "changes whenever an open alert changes (state, severity, "
                                                        "acknowledgement, snooze)"},
        }),
        "AlertHistory": obj({"alerts": {"type": "array", "items": ref("Alert")}, "page": INTEGER,
                             "has_next": BOOLEAN}),
        "AlertDetail": obj({"alert": ref("Alert"), "transitions": {"type": "array", "items": obj({
            "id": INTEGER, "from": nullable(state), "to": state, "at": TIMESTAMP, "value": N_NUMBER,
            "note": N_STRING})}}),
        "AlertRules": obj({
            "rules": {"type": "array", "items": obj({
                "id": INTEGER, "name": STRING, "type": STRING, "provisioned": BOOLEAN, "enabled": BOOLEAN,
                "open_alerts": INTEGER, "last_error": N_STRING, "updated_at": N_TIMESTAMP, "updated_by": N_STRING,
                "config": {"type": "object", "additionalProperties": True,
                           "description": "the rule as alerts.json writes it"}})},
            "provisioning": nullable(obj({"path": STRING, "applied_at": N_TIMESTAMP, "checked_at": TIMESTAMP,
                                          "error": N_STRING})),
        }),
        "AlertsDocument": {
            "type": "object", "required": ["alerts"], "additionalProperties": False,
            "properties": {"alerts": {"type": "object", "additionalProperties": {"type": "object"},
                                      "description": "rules by name: type, enabled, severity, for, keepFiringFor, "
                                                     "matchers, labels, annotations and the type's parameters"},
                           "comment": STRING},
        },
        "AlertsConfigured": obj({"mode": {"type": "string", "enum": ["replace", "merge"]},
                                 "created": {"type": "array", "items": STRING},
                                 "updated": {"type": "array", "items": STRING},
                                 "removed": {"type": "array", "items": STRING}, "unchanged": INTEGER}),
        "AlertsRefused": obj({"error": STRING, "problems": {"type": "array", "items": obj(
            {"field": STRING, "reason": STRING})}}),
    }


def paths() -> dict[str, Any]:
    from panel.api.openapi import _error as error
    from panel.api.openapi import _ok as ok
    from panel.api.openapi import _operation
    from panel.hosts.history import RANGES

    def op(*args, **kwargs) -> dict[str, Any]:
        out = _operation(*args, **kwargs)
        out["tags"] = ["alerts"]
        return out

    def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}

    text = {"type": "string", "maxLength": 200}
    common = [
        query("severity", {"type": "string", "enum": list(SEVERITIES)}, "only this severity"),
        query("rule", text, "only alerts of the rule of this name"),
        query("host", text, "only alerts of this host"),
        query("component", {"type": "string", "enum": list(COMPONENTS)}, "only alerts of this component"),
        query("q", text, "text in the labels or the summary"),
    ]
    open_states = "^(pending|firing)(,(pending|firing))*$"
    all_states = "^({s})(,({s}))*$".format(s="|".join(STATES))
    alert_id = {"name": "alert_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
    bad = error("A filter or parameter out of range; the message names it")
    return {
        "/api/admin/alerts": {"get": op(
            "Open alerts (pending, firing): firing first, by severity, newest first", "listAlerts",
            {"200": ok("Open alerts and counts", "AlertList"), "400": bad},
            parameters=[query("state", {"type": "string", "pattern": open_states}, "pending, firing or both"),
                        *common,
                        query("limit", {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT, "default": 500},
                              "alerts per answer"),
                        query("offset", {"type": "integer", "minimum": 0, "maximum": 10_000_000}, "alerts skipped")])},
        "/api/admin/alerts/history": {"get": op(
            "Alerts of every state with filters, newest first, 50 a page", "listAlertHistory",
            {"200": ok("A page of alerts", "AlertHistory"), "400": bad},
            parameters=[query("state", {"type": "string", "pattern": all_states}, "states, comma separated"),
                        *common,
                        query("since", {"type": "string", "format": "date"}, "active since this UTC day"),
                        query("until", {"type": "string", "format": "date"}, "active until this UTC day (inclusive)"),
                        query("fired", {"type": "string", "enum": ["0", "1", "true", "false"]},
                              "1: only alerts that fired (not those that cleared while pending)"),
                        query("page", {"type": "integer", "minimum": 1, "maximum": 100_000}, "from 1")])},
        "/api/admin/alerts/{alert_id}": {"get": op(
            "One alert with every transition of its state", "getAlert",
            {"200": ok("The alert and its timeline", "AlertDetail"), "404": error("No such alert")},
            parameters=[alert_id])},
        "/api/admin/alerts/{alert_id}/series": {"get": op(
            "Series of the alert's host around the alert, for its graph", "getAlertSeries",
            {"200": ok("Points; the episode in the middle of the range when it fits", "Series"),
             "400": error("Bad range, no name, too many names"),
             "404": error("No such alert, or its host has no data")},
            parameters=[alert_id,
                        {"name": "name", "in": "query", "required": True, "style": "form", "explode": True,
                         "description": "metric name (repeat for several, up to 8)",
                         "schema": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
                        query("labels", {"type": "string"}, "label filter: key=value, several with commas"),
                        query("range", {"type": "string", "enum": list(RANGES)},
                              "without it, the shortest range showing the whole episode")])},
        "/api/admin/alerts/rules": {"get": op(
            "Every alert rule with its configuration, open alerts and last error; the rules file's status",
            "listAlertRules", {"200": ok("The rules", "AlertRules")})},
        "/api/admin/alerts/export": {"get": op(
            "The rules as alerts.json", "exportAlertRules",
            {"200": ok("An alerts.json document", "AlertsDocument"), "400": bad},
            parameters=[query("origin", {"type": "string", "enum": ["all", "provisioned", "ui"]},
                              "provisioned: from the file; ui: made in the UI or the API")])},
        "/api/admin/alerts/configure": {"post": {
            **op("Set the rules made outside the file from an alerts.json document (checked whole: refused with "
                 "every problem, the previous rules staying in force)", "configureAlertRules",
                 {"200": ok("What changed", "AlertsConfigured"),
                  "400": {"description": "Refused: every problem with its field and reason",
                          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AlertsRefused"}}}}},
                 role="admin",
                 parameters=[query("mode", {"type": "string", "enum": ["replace", "merge"], "default": "replace"},
                                   "replace: rules made in the UI that the document does not name are removed")]),
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/AlertsDocument"}}}},
        }},
    }

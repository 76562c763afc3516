"""The OpenAPI description of ``/api/admin/maintenance`` (merged into ``/api/openapi.json``)."""

from __future__ import annotations

from typing import Any

from agent.contract import ACTIONS, HOST_NAME_RULE
from panel.maintenance.store import STATUSES

HOST_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
STATUS_LIST_PATTERN = "^({s})(,({s}))*$".format(s="|".join(STATUSES))
_HHMM = "([01][0-9]|2[0-3]):[0-5][0-9]"
CADENCE_PATTERN = (f"^(daily at {_HHMM}|weekly on (monday|tuesday|wednesday|thursday|friday|saturday|sunday) at "
                   f"{_HHMM}|every ([1-9]|[1-9][0-9]|1[0-5][0-9]|16[0-8]) hours?)$")


def schemas() -> dict[str, Any]:
    from panel.api.openapi import BOOLEAN, INTEGER, N_INTEGER, N_NUMBER, N_STRING, N_TIMESTAMP, STRING, TIMESTAMP
    from panel.api.openapi import _nullable as nullable
    from panel.api.openapi import _object as obj
    from panel.api.openapi import _ref as ref

    lines = {"type": "array", "items": STRING, "description": "output lines, as the worker reported them"}
    status = {"type": "string", "enum": list(STATUSES)}
    job = {
        "id": {"type": "string", "format": "uuid"}, "host": STRING, "action": {"type": "string", "enum": list(ACTIONS)},
        "title": STRING, "params": {"type": "object", "additionalProperties": True,
                                    "description": "validated parameters (a new config.json only as its digest)"},
        "status": status, "requested_by": {"type": "string", "description": "user:NAME, token:NAME or schedule:NAME"},
        "requested_at": TIMESTAMP, "started_at": N_TIMESTAMP, "finished_at": N_TIMESTAMP,
        "duration_seconds": N_NUMBER, "summary": N_STRING, "error": N_STRING, "schedule_id": N_INTEGER,
        "rq_job_id": N_STRING,
    }
    return {
        "MaintenanceJobSummary": obj(job),
        "MaintenanceJob": obj({**job, "progress": lines,
                               "details": {"type": "object", "additionalProperties": True},
                               "result": nullable({"type": "object", "additionalProperties": True,
                                                   "description": "the worker's return value"})}),
        "MaintenanceJobList": obj({"jobs": {"type": "array", "items": ref("MaintenanceJobSummary")}}),
        "MaintenanceHost": obj({
            "host": STRING, "key": {"type": "boolean", "description": "the host has a job key (is enrolled)"},
            "enrol_hint": STRING,
            "safe_mode": obj({"on": BOOLEAN, "by": N_STRING, "at": N_TIMESTAMP, "reason": N_STRING}),
            "worker": obj({"online": BOOLEAN, "workers": INTEGER, "busy": INTEGER, "last_seen": N_TIMESTAMP,
                           "error": N_STRING}),
            "worker_grace_seconds": INTEGER,
            "jobs": {"type": "array", "items": ref("MaintenanceJob")},
        }),
        "MaintenanceLog": obj({"entries": {"type": "array", "items": obj({
            **{k: job[k] for k in ("id", "host", "action", "status", "requested_by", "requested_at", "started_at",
                                   "finished_at", "summary", "error")}, "progress": lines})}}),
        "MaintenanceActions": obj({"actions": {"type": "array", "items": {"type": "object"}}}),
        "MaintenanceSchedule": obj({
            "id": INTEGER, "name": STRING, "host": STRING, "action": STRING,
            "params": {"type": "object", "additionalProperties": True},
            "cadence": {"type": "string", "description": "daily at HH:MM, weekly on WEEKDAY at HH:MM (UTC), "
                                                         "every N hours"},
            "enabled": BOOLEAN, "provisioned": BOOLEAN, "last_run_at": N_TIMESTAMP, "next_run_at": N_TIMESTAMP,
            "last_job_id": N_STRING,
        }),
        "MaintenanceScheduleList": obj({
            "schedules": {"type": "array", "items": ref("MaintenanceSchedule")},
            "provisioning": nullable(obj({"path": N_STRING, "applied_at": N_TIMESTAMP, "error": N_STRING})),
        }),
    }


def paths() -> dict[str, Any]:
    from panel.api.openapi import _error as error
    from panel.api.openapi import _ok as ok
    from panel.api.openapi import _operation

    def op(*args, **kwargs) -> dict[str, Any]:
        out = _operation(*args, **kwargs)
        out["tags"] = ["maintenance"]
        return out

    host_q = {"name": "host", "in": "query", "required": False, "description": f"host name ({HOST_NAME_RULE})",
              "schema": {"type": "string", "pattern": HOST_PATTERN}}
    action_q = {"name": "action", "in": "query", "required": False,
                "schema": {"type": "string", "enum": list(ACTIONS)}}
    status_q = {"name": "status", "in": "query", "required": False,
                "description": "job status, several separated by commas",
                "schema": {"type": "string", "pattern": STATUS_LIST_PATTERN}}

    def limit_q(default: int) -> dict[str, Any]:
        return {"name": "limit", "in": "query", "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": default}}

    job_id = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
    bad_filter = error("A filter is not valid (the error names it in `field`)")
    refused_text = ("403: the role is too low for these parameters (a destructive action needs admin), it needs a "
                    "fresh TOTP code (a session that confirmed one in the last 5 minutes: an API token alone "
                    "cannot run a destructive action), or the host is in safe mode")
    return {
        "/api/admin/maintenance/actions": {"get": op(
            "The maintenance catalogue: actions, parameters, destructive or not", "listMaintenanceActions",
            {"200": ok("The actions", "MaintenanceActions")})},
        "/api/admin/maintenance/hosts/{name}": {"get": op(
            "One host's maintenance state: job key, worker presence, safe mode, current jobs",
            "getMaintenanceHost", {"200": ok("The host", "MaintenanceHost"), "404": error("Unknown host")},
            parameters=[{"name": "name", "in": "path", "required": True,
                         "schema": {"type": "string", "pattern": HOST_PATTERN}}])},
        "/api/admin/maintenance/jobs": {"get": op(
            "Maintenance jobs, newest first", "listMaintenanceJobs",
            {"200": ok("Jobs", "MaintenanceJobList"), "400": bad_filter},
            parameters=[host_q, action_q, status_q, limit_q(50)])},
        "/api/admin/maintenance/jobs/{job_id}": {"get": op(
            "One job with its output (progress lines), summary, details and error", "getMaintenanceJob",
            {"200": ok("The job", "MaintenanceJob"), "404": error("No such job")}, parameters=[job_id])},
        "/api/admin/maintenance/jobs/{job_id}/cancel": {"post": op(
            "Cancel a queued job (a running one cannot be cancelled)", "cancelMaintenanceJob",
            {"200": ok("The cancelled job", "MaintenanceJob"), "404": error("No such job"),
             "409": error("The job is not queued any more"), "503": error("Redis cannot be reached")},
            role="operator", parameters=[job_id])},
        "/api/admin/maintenance/logs": {"get": op(
            "The job output log: recent jobs with their output lines", "getMaintenanceLogs",
            {"200": ok("Entries, newest job first", "MaintenanceLog"), "400": bad_filter},
            parameters=[host_q, action_q, status_q, limit_q(20)])},
        "/api/admin/maintenance/schedules": {
            "get": op("Schedules, and the state of provisioning from the configuration file",
                      "listMaintenanceSchedules", {"200": ok("Schedules", "MaintenanceScheduleList")},
                      parameters=[host_q]),
            "post": {**op("Create a schedule", "createMaintenanceSchedule",
                          {"201": ok("The schedule", "MaintenanceSchedule"),
                           "400": error("A field is not valid (named in `field`)")}, role="admin"),
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "type": "object", "required": ["name", "host", "action", "cadence"],
                         "additionalProperties": False,
                         "properties": {
                             "name": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$"},
                             "host": {"type": "string", "pattern": HOST_PATTERN},
                             "action": {"type": "string", "enum": [a.name for a in ACTIONS.values() if a.scheduled]},
                             "params": {"type": "object", "description": "the action's parameters (defaults "
                                                                         "for those left out)"},
                             "cadence": {"type": "string", "pattern": CADENCE_PATTERN},
                             "enabled": {"type": "boolean", "default": True}}}}}}},
        },
        "/api/admin/maintenance/{action_name}": {"post": {**op(
            "Queue a maintenance action on a host", "runMaintenanceAction",
            {"202": ok("The queued job", "MaintenanceJob"),
             "400": error("A parameter is not valid (named in `field`), or several hosts and no ?host="),
             "404": error("Unknown action or host"),
             "409": error("The host has no job key: enrol it with 'poolwarden-panel maintenance enrol HOST'"),
             "503": error("Redis cannot be reached: nothing was queued")},
            role="operator", parameters=[
                {"name": "action_name", "in": "path", "required": True,
                 "schema": {"type": "string", "enum": list(ACTIONS)}},
                {**host_q, "description": "host name; optional when only one host is known (or \"host\" in the "
                                          "body)"}]),
            "requestBody": {"required": False, "description": "The action's parameters (see "
                            "/api/admin/maintenance/actions); missing ones take their defaults. " + refused_text + ".",
                            "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": True}}}}}},
    }

"""``/api/admin``: acknowledge and snooze alerts, silences, channels, test notifications, deliveries.

Operators (tokens or sessions) may acknowledge, snooze and silence; admins read channels and
deliveries and send tests. Every change is audited. Errors are ``{"error": ...}`` with 400, 404 or
409.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, current_app, jsonify, request

from panel.auth.principal import role_required
from panel.db import get_db
from panel.notify.acks import AlertActionError, acknowledge, snooze
from panel.notify.jobs import send_test
from panel.notify.routes import actor
from panel.notify.settings import Settings
from panel.notify.silences import SilenceError, create_silence, expire_silence, get_silence, list_silences
from panel.notify.store import get_integration, list_deliveries, list_integrations

bp = Blueprint("notify_api", __name__, url_prefix="/api/admin")

SILENCE_KEYS = ("matchers", "startsAt", "endsAt", "comment", "recurrence")
MAX_LIMIT = 500


def _error(message: str, status: int):
    return jsonify(error=message), status


def _body() -> dict:
    body = request.get_json(silent=True) if request.is_json else None
    if body is None and request.form:
        body = request.form.to_dict()
    return body if isinstance(body, dict) else {}


@bp.post("/alerts/acknowledge/<int:alert_id>")
@role_required("operator")
def acknowledge_alert(alert_id: int):
    try:
        return jsonify(acknowledge(get_db(), alert_id, actor()))
    except AlertActionError as exc:
        return _error(str(exc), exc.status)


@bp.post("/alerts/snooze/<int:alert_id>")
@role_required("operator")
def snooze_alert(alert_id: int):
    minutes = _body().get("minutes", request.args.get("minutes"))
    if minutes is None or isinstance(minutes, bool | dict | list):
        return _error("give minutes (1 to 10080) as JSON {\"minutes\": 60}", 400)
    try:
        return jsonify(snooze(get_db(), alert_id, minutes, actor()))
    except AlertActionError as exc:
        return _error(str(exc), exc.status)


def _timestamp(raw, field: str) -> datetime | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise SilenceError(f"{field}: an ISO 8601 date and time, e.g. 2025-06-01T03:00:00Z")
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise SilenceError(f"{field}: an ISO 8601 date and time, e.g. 2025-06-01T03:00:00Z, got {raw!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@bp.get("/silences")
@role_required("viewer")
def silences():
    state = request.args.get("state", "live")
    if state not in ("live", "all"):
        return _error("state is live (active, pending and scheduled silences) or all", 400)
    now = datetime.now(UTC)
    found = list_silences(get_db(), now, include_expired=state == "all", limit=200)
    return jsonify(silences=[s.as_json(now) for s in found])


@bp.post("/silences")
@role_required("operator")
def create():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _error("send a JSON object: {\"matchers\": [{\"name\": \"host\", \"op\": \"=\", \"value\": \"pool-1\"}],"
                      " \"endsAt\": \"...\"}", 400)
    unknown = sorted(set(body) - set(SILENCE_KEYS))
    if unknown:
        return _error(f"{unknown[0]}: unknown key (a silence has {', '.join(SILENCE_KEYS)})", 400)
    comment = body.get("comment", "")
    try:
        if not isinstance(comment, str):
            raise SilenceError("comment: must be a string")
        silence_id = create_silence(get_db(), matchers=body.get("matchers"),
                                    starts_at=_timestamp(body.get("startsAt"), "startsAt"),
                                    ends_at=_timestamp(body.get("endsAt"), "endsAt"), created_by=actor(),
                                    comment=comment, source="api", recurrence=body.get("recurrence"))
    except SilenceError as exc:
        return _error(str(exc), 400)
    return jsonify(get_silence(get_db(), silence_id).as_json(datetime.now(UTC))), 201


@bp.delete("/silences/<int:silence_id>")
@role_required("operator")
def expire(silence_id: int):
    try:
        expired = expire_silence(get_db(), silence_id, actor())
    except SilenceError as exc:
        return _error(str(exc), 404)
    silence = get_silence(get_db(), silence_id)
    return jsonify({**silence.as_json(datetime.now(UTC)), "expiredNow": expired})


@bp.get("/integrations")
@role_required("admin")
def integrations():
    return jsonify(integrations=[i.view() for i in list_integrations(get_db())])


@bp.post("/integrations/<int:integration_id>/test")
@role_required("admin")
def test(integration_id: int):
    conn = get_db()
    if get_integration(conn, integration_id) is None:
        return _error(f"no channel {integration_id}", 404)
    result = send_test(conn, integration_id, by=actor(),
                       external_url=Settings.from_config(current_app.config).external_url)
    return jsonify(result)


@bp.get("/deliveries")
@role_required("admin")
def deliveries():
    try:
        limit = int(request.args.get("limit", 100))
        integration = request.args.get("integration")
        integration_id = int(integration) if integration not in (None, "") else None
        before = request.args.get("before")
        before_id = int(before) if before not in (None, "") else None
    except ValueError:
        return _error("limit, integration and before are whole numbers", 400)
    if (integration_id is not None and not 0 < integration_id < 2**31) or (
            before_id is not None and not 0 < before_id < 2**63):
        return _error("integration or before is out of range", 400)
    if not 1 <= limit <= MAX_LIMIT:
        return _error(f"limit is 1 to {MAX_LIMIT}", 400)
    found = list_deliveries(get_db(), integration_id=integration_id, limit=limit, before_id=before_id)
    for row in found:
        row["at"] = row["at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        row["duration_ms"] = round(row["duration_ms"], 1)
    return jsonify(deliveries=found)

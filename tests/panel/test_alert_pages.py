"""Alert pages and /api/admin/alerts with roles: viewers read, operators get the notifier's
acknowledge/snooze buttons, admins change rules (editor with preview, import, configure API);
invalid rules are refused with the field and the reason and nothing changes; changes are audited."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from panel.alerts.evaluator import Evaluator
from panel.alerts.store import load_rules
from tests.panel.alert_helpers import Feed, add_rule, alerts
from tests.panel.auth_helpers import csrf_token

S = timedelta(seconds=1)


@pytest.fixture
def conn(db_url):
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def scene(conn):
    """pool-1 with a firing disk alert on /data, a CPU alert that fired and resolved, a pending load alert."""
    now = datetime.now(UTC).replace(microsecond=0)
    t0 = now - timedelta(minutes=30)
    feed, ev = Feed(conn), Evaluator()
    add_rule(conn, "diskSpace", "disk_usage", **{"for": "0s"})
    add_rule(conn, "highCpuUsage", "cpu_high", **{"for": "0s"})
    add_rule(conn, "highLoad", "load_high", **{"for": "1h"})
    for minute in range(0, 31):
        at = t0 + timedelta(minutes=minute)
        feed.sample("pool-1", "poolwarden_cpu_count", 4, at)
        feed.sample("pool-1", "poolwarden_disk_used_percent", 70 + minute / 2, at, {"mount": "/data"})
        feed.sample("pool-1", "poolwarden_cpu_usage_percent", 97 if 5 <= minute < 10 else 20, at)
        feed.sample("pool-1", "poolwarden_load5", 12, at)
        ev.evaluate(conn, at, every_rule=True)
    by_rule = {a["rule"]: a for a in alerts(conn)}
    assert by_rule["diskSpace"]["state"] == "firing"
    assert by_rule["highCpuUsage"]["state"] == "resolved"
    assert by_rule["highLoad"]["state"] == "pending"
    return by_rule


def test_viewer_sees_the_open_alerts_without_action_buttons(viewer, scene):
    page = viewer.client.get("/alerts").get_data(as_text=True)
    assert "Disk /data on pool-1 is 85 % full" in page
    assert "highLoad" in page and "pending" in page
    assert "highCpuUsage" not in page               # resolved: in the history only
    assert "<b>1</b> warning" in page and "<b>1</b> pending" in page
    assert "/acknowledge" not in page               # a viewer cannot acknowledge
    assert 'data-refresh-url="/api/admin/alerts?limit=0"' in page


def test_operator_gets_acknowledge_and_snooze_posting_to_the_notifier(auth, scene):
    auth.login("olga", "operator")
    page = auth.client.get("/alerts").get_data(as_text=True)
    alert_id = scene["diskSpace"]["id"]
    assert f'action="/alerts/{alert_id}/acknowledge"' in page
    assert f'action="/alerts/{alert_id}/snooze"' in page
    token = csrf_token(page)
    response = auth.client.post(f"/alerts/{alert_id}/acknowledge", data={"csrf_token": token, "next": "/alerts"})
    assert response.status_code == 302
    page = auth.client.get("/alerts").get_data(as_text=True)
    assert "acked by user:olga" in page


def test_history_filters(viewer, scene):
    client = viewer.client
    page = client.get("/alerts/history").get_data(as_text=True)
    assert all(name in page for name in ("diskSpace", "highCpuUsage", "highLoad"))
    page = client.get("/alerts/history?state=resolved").get_data(as_text=True)
    assert "highCpuUsage" in page and "diskSpace</a>" not in page
    page = client.get("/alerts/history?rule=diskSpace&host=pool-1").get_data(as_text=True)
    assert "diskSpace</a>" in page and "highLoad</a>" not in page
    page = client.get("/alerts/history?q=/data").get_data(as_text=True)
    assert "diskSpace</a>" in page and "highCpuUsage</a>" not in page
    page = client.get("/alerts/history?fired=1&state=pending").get_data(as_text=True)
    assert "No alert matches." in page
    page = client.get("/alerts/history?since=yesterday").get_data(as_text=True)
    assert "since: a date like 2026-11-20" in page


def test_alert_detail_shows_the_timeline_and_the_graph_around_the_event(viewer, scene):
    alert_id = scene["highCpuUsage"]["id"]
    response = viewer.client.get(f"/alerts/{alert_id}")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/alerts/{alert_id}?range=1h")
    page = viewer.client.get(f"/alerts/{alert_id}?range=1h").get_data(as_text=True)
    assert "CPU on pool-1 is 97 % busy" in page
    assert page.count('class="to-') == 2        # created firing, then resolved
    assert "the condition cleared" in page
    assert f'data-series-url="/api/admin/alerts/{alert_id}/series"' in page
    assert 'data-names="poolwarden_cpu_usage_percent"' in page
    series = viewer.client.get(f"/api/admin/alerts/{alert_id}/series?name=poolwarden_cpu_usage_percent&range=1h")
    body = series.get_json()
    assert series.status_code == 200, body
    values = [v for v in body["series"][0]["values"] if v is not None]
    assert max(values) == 97 and min(values) == 20
    assert viewer.client.get("/alerts/999999?range=1h").status_code == 404


def test_api_lists_open_alerts_history_and_detail(viewer, scene):
    client = viewer.client
    body = client.get("/api/admin/alerts").get_json()
    assert [a["rule"] for a in body["alerts"]] == ["diskSpace", "highLoad"]     # firing first
    assert (body["total"], body["warning"], body["pending"]) == (2, 1, 1)
    disk = body["alerts"][0]
    assert disk["labels"] == {"alertname": "diskSpace", "rule_type": "disk_usage", "severity": "warning",
                              "host": "pool-1", "component": "disk", "mount": "/data"}
    assert disk["value_text"] == "85.0 %" and disk["state"] == "firing"
    assert client.get("/api/admin/alerts?state=resolved").status_code == 400
    assert client.get("/api/admin/alerts?severity=critical").get_json()["alerts"] == []
    history = client.get("/api/admin/alerts/history?state=resolved").get_json()
    assert [a["rule"] for a in history["alerts"]] == ["highCpuUsage"]
    detail = client.get(f"/api/admin/alerts/{scene['highCpuUsage']['id']}").get_json()
    assert [(t["from"], t["to"]) for t in detail["transitions"]] == [(None, "firing"), ("firing", "resolved")]
    assert client.get("/api/admin/alerts/424242").status_code == 404


def test_rules_page_and_editor_are_read_only_for_viewers(viewer, conn, scene):
    page = viewer.client.get("/alerts/rules").get_data(as_text=True)
    assert "diskSpace" in page and "New rule" not in page and "Import rules" not in page
    rule_id = conn.execute("SELECT id FROM alert_rules WHERE name = 'diskSpace'").fetchone()[0]
    page = viewer.client.get(f"/alerts/rules/{rule_id}").get_data(as_text=True)
    assert "<fieldset disabled>" in page and "Delete this rule" not in page
    assert viewer.client.get("/alerts/rules/new?type=cpu_high").status_code == 403
    page = viewer.client.get(f"/alerts/rules/{rule_id}?preview=1").get_data(as_text=True)
    assert "Would have fired" in page or "No history" in page


def editor_form(page: str, **fields) -> dict:
    data = {"csrf_token": csrf_token(page), "severity": "warning", "pending": "0s", "keep": "0s", "enabled": "y",
            "action": "save"}
    data.update(fields)
    return data


def test_admin_creates_a_rule_with_the_editor_and_previews_it(auth, conn, scene, audited):
    from panel.engine.rollups import run_rollups

    run_rollups(conn)       # the preview replays the 1-minute rollups
    auth.login("ada", "admin")
    client = auth.client
    assert "Threshold on any metric" in client.get("/alerts/rules/new").get_data(as_text=True)
    page = client.get("/alerts/rules/new?type=threshold").get_data(as_text=True)
    assert 'list="metric-names"' in page and "poolwarden_disk_used_percent" in page
    form = editor_form(page, type="threshold", name="dataAbove80", p_metric="poolwarden_disk_used_percent",
                       p_op=">", p_threshold="80", p_component="disk", matchers='mount="/data"')
    preview = client.post("/alerts/rules/new", data={**form, "action": "preview"}).get_data(as_text=True)
    assert "Would have fired 1 time in the last 7 days on 1 label set" in preview
    assert load_rules(conn) and "dataAbove80" not in [r.name for r in load_rules(conn)]   # a preview saves nothing
    response = client.post("/alerts/rules/new", data=form)
    assert response.status_code == 302
    rule = next(r for r in load_rules(conn) if r.name == "dataAbove80")
    assert (rule.params["metric"], rule.params["threshold"], rule.matchers) == (
        "poolwarden_disk_used_percent", 80, ['mount="/data"'])
    assert any(a["action"] == "alerts.rule_create" for a in audited)


def test_the_editor_shows_each_problem_next_to_its_field_and_saves_nothing(auth, conn, scene):
    auth.login("ada", "admin")
    page = auth.client.get("/alerts/rules/new?type=disk_usage").get_data(as_text=True)
    form = editor_form(page, type="disk_usage", name="disk2", p_warningPercent="95", p_criticalPercent="90",
                       pending="five minutes", matchers="mount ~ x")
    response = auth.client.post("/alerts/rules/new", data=form)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "must be at most criticalPercent (90), got 95" in page
    assert "must be a duration like" in page
    assert "is not &#39;label op value&#39;" in page
    assert "disk2" not in [r.name for r in load_rules(conn)]


def test_provisioned_rules_cannot_be_changed_in_the_ui(auth, conn, runner, tmp_path):
    path = tmp_path / "alerts.json"
    path.write_text(json.dumps({"alerts": {"cpu": {"type": "cpu_high", "maxPercent": 95}}}))
    assert runner.invoke(args=["alerts", "import", str(path)]).exit_code == 0
    rule_id = conn.execute("SELECT id FROM alert_rules WHERE name = 'cpu'").fetchone()[0]
    auth.login("ada", "admin")
    page = auth.client.get(f"/alerts/rules/{rule_id}").get_data(as_text=True)
    assert "provisioned from the file: read-only" in page and "<fieldset disabled>" in page
    response = auth.client.post(f"/alerts/rules/{rule_id}", data=editor_form(page, name="cpu", p_maxPercent="50"))
    assert response.status_code == 302
    assert [r.params["maxPercent"] for r in load_rules(conn)] == [95]
    assert "Copy as a new rule" in page
    copy = auth.client.get(f"/alerts/rules/new?from={rule_id}").get_data(as_text=True)
    assert 'value="cpuCopy"' in copy and 'value="95"' in copy


def test_deleting_a_rule_needs_a_fresh_code(auth, conn, scene, audited):
    auth.login("ada", "admin")
    rule_id = conn.execute("SELECT id FROM alert_rules WHERE name = 'highLoad'").fetchone()[0]
    page = auth.client.get(f"/alerts/rules/{rule_id}").get_data(as_text=True)
    auth.app.config["STEP_UP_SECONDS"] = 0          # the code entered at sign-in is no longer fresh
    response = auth.client.post(f"/alerts/rules/{rule_id}/delete", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 302 and "/step-up" in response.headers["Location"]
    assert "highLoad" in [r.name for r in load_rules(conn)]
    auth.app.config["STEP_UP_SECONDS"] = 300        # just signed in with a code: fresh enough
    response = auth.client.post(f"/alerts/rules/{rule_id}/delete", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 302 and response.headers["Location"].endswith("/alerts/rules")
    assert "highLoad" not in [r.name for r in load_rules(conn)]
    assert conn.execute("SELECT count(*) FROM alerts WHERE rule_id = %s", (rule_id,)).fetchone()[0] == 0
    assert [a["object_id"] for a in audited if a["action"] == "alerts.rule_delete"] == [str(rule_id)]


def test_configure_api_refuses_an_invalid_document_whole_and_keeps_the_rules(auth, conn, scene, audited):
    auth.login("ada", "admin")
    client = auth.client
    token = csrf_token(client.get("/alerts/rules").get_data(as_text=True))
    before = {r.name: r.definition() for r in load_rules(conn)}
    bad = {"alerts": {"ok": {"type": "cpu_high"}, "bad": {"type": "disk_usage", "criticalPercent": "x"}}}
    response = client.post("/api/admin/alerts/configure", json=bad, headers={"X-CSRFToken": token})
    assert response.status_code == 400
    body = response.get_json()
    assert body["problems"] == [{"field": "alerts.bad.criticalPercent", "reason": "must be a number, got 'x'"}]
    assert {r.name: r.definition() for r in load_rules(conn)} == before
    good = {"alerts": {"loadHigh": {"type": "load_high", "maxPerCore": 4, "clearPerCore": 3}}}
    response = client.post("/api/admin/alerts/configure?mode=merge", json=good, headers={"X-CSRFToken": token})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["created"] == ["loadHigh"]
    assert [a for a in audited if a["action"] == "alerts.configure"]
    exported = client.get("/api/admin/alerts/export?origin=ui").get_json()
    assert exported["alerts"]["loadHigh"]["maxPerCore"] == 4 and "diskSpace" in exported["alerts"]
    response = client.post("/api/admin/alerts/configure", json=good, headers={"X-CSRFToken": token})  # replace
    assert response.get_json()["removed"] == ["diskSpace", "highCpuUsage", "highLoad"]


def test_viewer_cannot_configure(viewer, scene):
    token = csrf_token(viewer.client.get("/alerts").get_data(as_text=True))
    response = viewer.client.post("/api/admin/alerts/configure", json={"alerts": {}}, headers={"X-CSRFToken": token})
    assert response.status_code == 403
    assert "admin" in response.get_json()["error"]


def test_import_form_on_the_rules_page(auth, conn, scene):
    auth.login("ada", "admin")
    page = auth.client.get("/alerts/rules").get_data(as_text=True)
    response = auth.client.post("/alerts/rules/import", data={
        "csrf_token": csrf_token(page), "mode": "merge",
        "document": '{"alerts": {"x": {"type": "cpu_high", "for": 3}}'})
    assert response.status_code == 400
    assert "not JSON" in response.get_data(as_text=True)
    response = auth.client.post("/alerts/rules/import", data={
        "csrf_token": csrf_token(page), "mode": "merge",
        "document": json.dumps({"alerts": {"x": {"type": "cpu_high", "for": "3m"}}})})
    assert response.status_code == 302
    assert "x" in [r.name for r in load_rules(conn)]
    export = auth.client.get("/alerts/rules.json")
    assert export.headers["Content-Disposition"].startswith("attachment;")
    assert json.loads(export.get_data(as_text=True))["alerts"]["x"]["for"] == "3m"


def json_schema(node):
    """OpenAPI 3.0 schema -> JSON Schema (``nullable`` becomes a null type)."""
    if isinstance(node, list):
        return [json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def test_api_answers_match_the_openapi_document(viewer, scene):
    import jsonschema

    from panel.api.openapi import document

    components = json_schema(document()["components"])
    client = viewer.client
    alert_id = scene["highCpuUsage"]["id"]
    for url, schema in [("/api/admin/alerts", "AlertList"), ("/api/admin/alerts/history", "AlertHistory"),
                        (f"/api/admin/alerts/{alert_id}", "AlertDetail"), ("/api/admin/alerts/rules", "AlertRules"),
                        ("/api/admin/alerts/export", "AlertsDocument"),
                        (f"/api/admin/alerts/{alert_id}/series?name=poolwarden_cpu_usage_percent", "Series")]:
        response = client.get(url)
        assert response.status_code == 200, (url, response.get_json())
        jsonschema.validate(response.get_json(), {"$ref": f"#/components/schemas/{schema}", "components": components})

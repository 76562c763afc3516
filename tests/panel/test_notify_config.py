"""integrations.json: channels and routes provisioned (secrets encrypted), a wrong file refused with
the field and the reason while the previous configuration stays in force, and the checks of
matchers, recurring windows and channel settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from panel.notify.channels import FieldError
from panel.notify.channels.email import EmailChannel
from panel.notify.channels.webhook import WebhookChannel
from panel.notify.matchers import MatcherError, parse_lines
from panel.notify.provisioning import parse, provision, provision_if_changed, provisioning_status
from panel.notify.silences import Recurrence, SilenceError
from panel.notify.store import list_integrations, load_routes, save_integration

pytest_plugins = ["tests.panel.notify_fixtures"]  # fixture: secrets_key

ROOT = Path(__file__).resolve().parents[2]

GOOD = {
    "defaults": {"groupWaitSeconds": 15},
    "integrations": [
        {"name": "ops-hook", "type": "webhook", "url": "https://hooks.example.org/T0KEN", "secret": "${HOOK_SECRET}"},
        {"name": "ops-mail", "type": "email", "smtpHost": "mail.example.org", "from": "pw@example.org",
         "to": ["a@example.org", "b@example.org"], "username": "pw", "password": "smtp-pass"},
    ],
    "routes": [
        {"name": "critical", "severities": ["critical"], "integrations": ["ops-hook", "ops-mail"]},
        {"name": "pools", "matchers": [{"name": "component", "op": "=", "value": "pool"}],
         "integrations": ["ops-hook"], "groupBy": ["pool"], "continue": True},
    ],
}


@pytest.fixture
def conn(db_url, secrets_key, monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", "hmac-from-env")
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as c:
        yield c


def write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_a_valid_file_provisions_channels_and_routes(conn, tmp_path):
    result = provision(conn, write(tmp_path / "integrations.json", GOOD))
    assert result.ok and result.counts == {"integrations": 2, "routes": 2, "removed": 0}
    channels = {c.name: c for c in list_integrations(conn)}
    assert set(channels) == {"ops-hook", "ops-mail"} and all(c.provisioned for c in channels.values())
    hook = channels["ops-hook"]
    assert hook.secrets() == {"url": "https://hooks.example.org/T0KEN", "secret": "hmac-from-env"}
    raw = conn.execute("SELECT string_agg(settings::text || coalesce(secrets_enc, ''), ' ') AS t"
                       " FROM integrations").fetchone()["t"]
    for secret in ("T0KEN", "hmac-from-env", "smtp-pass"):
        assert secret not in raw, "secrets are encrypted at rest"
    assert hook.view()["secrets"] == {"url": True, "secret": True, "authHeader": False}
    assert channels["ops-mail"].settings["to"] == ["a@example.org", "b@example.org"]
    routes = load_routes(conn)
    assert [(r.name, sorted(r.severities), r.integration_names, r.group_wait) for r in routes] == [
        ("critical", ["critical"], ("ops-hook", "ops-mail"), 15),
        ("pools", ["critical", "info", "warning"], ("ops-hook",), 15)]
    assert routes[1].group_by == ("pool",) and routes[1].continue_matching
    status = provisioning_status(conn)
    assert status["error"] is None and status["loaded_at"] is not None


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(integratons=[]), "integrations.json: integratons: unknown key (did you mean 'integrations'?)"),
    (lambda d: d["integrations"][1].update(to=["ops"]), "integrations.json: integrations[1].to: not an e-mail "
                                                         "address: 'ops'"),
    (lambda d: d["integrations"][0].update(url="ftp://x"), "integrations.json: integrations[0].url: must be an "
                                                            "http(s) URL"),
    (lambda d: d["integrations"][0].update(type="pager"), "integrations.json: integrations[0].type: unknown channel "
                                                           "type 'pager'"),
    (lambda d: d["integrations"][0].update(secret="${NOT_SET_ANYWHERE}"),
     "integrations.json: integrations[0].secret: environment variable NOT_SET_ANYWHERE is not set"),
    (lambda d: d["routes"][0].update(integrations=["pager"]),
     "integrations.json: routes[0].integrations: no channel named 'pager' in this file"),
    (lambda d: d["routes"][1]["matchers"][0].update(op="=~", value="(unclosed"),
     "integrations.json: routes[1].matchers[0].value: not a valid regular expression"),
    (lambda d: d["routes"][0].update(severities=["urgent"]), "integrations.json: routes[0].severities: a non-empty "
                                                              "list of info, warning, critical"),
    (lambda d: d["routes"][0].update(groupIntervalSeconds=0), "integrations.json: routes[0].groupIntervalSeconds: "
                                                               "whole seconds from 1 to 86400, got 0"),
    (lambda d: d["integrations"].append(dict(d["integrations"][0])), "integrations.json: integrations[2].name: "
                                                                      "'ops-hook' is used twice"),
])
def test_a_wrong_file_is_refused_and_the_previous_configuration_stays(conn, tmp_path, change, message):
    path = write(tmp_path / "integrations.json", GOOD)
    assert provision(conn, path).ok
    before = [(c.name, c.settings, c.secrets()) for c in list_integrations(conn)]
    data = json.loads(json.dumps(GOOD))
    change(data)
    result = provision(conn, write(path, data))
    assert not result.ok and result.error.startswith(message), result.error
    assert [(c.name, c.settings, c.secrets()) for c in list_integrations(conn)] == before
    assert [r.name for r in load_routes(conn)] == ["critical", "pools"]
    assert provisioning_status(conn)["error"] == result.error


def test_malformed_json_names_the_line(conn, tmp_path):
    result = provision(conn, write(tmp_path / "integrations.json", '{"integrations": [\n  {"name": "x",}\n]}'))
    assert result.error.startswith("integrations.json: malformed JSON at line 2, column 16: Expecting property name")


def test_entries_gone_from_the_file_are_removed_and_ui_entries_are_left_alone(conn, tmp_path):
    path = write(tmp_path / "integrations.json", GOOD)
    provision(conn, path)
    save_integration(conn, name="made-in-ui", kind="webhook", values={"url": "http://127.0.0.1:1/x"}, enabled=True,
                     by="user:ann")
    smaller = json.loads(json.dumps(GOOD))
    smaller["integrations"] = smaller["integrations"][:1]
    smaller["routes"] = [{"name": "critical", "severities": ["critical"], "integrations": ["ops-hook"]}]
    assert provision(conn, write(path, smaller)).ok
    assert sorted(c.name for c in list_integrations(conn)) == ["made-in-ui", "ops-hook"]
    assert [(r.name, r.integration_names) for r in load_routes(conn)] == [("critical", ("ops-hook",))]
    clash = json.loads(json.dumps(GOOD))
    clash["integrations"][0]["name"] = "made-in-ui"
    clash["routes"] = []
    result = provision(conn, write(path, clash))
    assert not result.ok and "was made in the panel" in result.error


def test_the_file_is_read_again_only_when_it_changes(conn, tmp_path):
    path = write(tmp_path / "integrations.json", GOOD)
    assert provision_if_changed(conn, str(path)).ok
    assert provision_if_changed(conn, str(path)) is None
    changed = json.loads(json.dumps(GOOD))
    changed["integrations"][0]["timeoutSeconds"] = 3
    write(path, changed)
    assert provision_if_changed(conn, str(path)).ok
    assert {c.name: c.settings for c in list_integrations(conn)}["ops-hook"]["timeoutSeconds"] == 3


def test_the_example_file_is_valid():
    spec = parse((ROOT / "config/integrations.json").read_text(), "integrations.json", env={})
    assert [i.name for i in spec.integrations] == ["ops-webhook", "ops-mail"]
    assert [r.name for r in spec.routes] == ["critical", "warnings", "disk-info"]


@pytest.mark.parametrize(("text", "expected"), [
    ("host=pool-1", [("host", "=", "pool-1")]),
    ('alertname=~"Disk.*", host!=pool-2', [("alertname", "=~", "Disk.*"), ("host", "!=", "pool-2")]),
    ('pool!~"ergo-(solo|pps)"\nseverity="critical"',
     [("pool", "!~", "ergo-(solo|pps)"), ("severity", "=", "critical")]),
    ('mount=~"/a{1,3}"', [("mount", "=~", "/a{1,3}")]),
])
def test_matchers_as_typed(text, expected):
    assert [(m.name, m.op, m.value) for m in parse_lines(text)] == expected


@pytest.mark.parametrize(("text", "message"), [
    ("host", "write it as name=value"),
    ("1host=x", "write it as name=value"),
    ("host=~(", "not a valid regular expression"),
    ("", "give at least one matcher"),
])
def test_bad_matchers_are_refused(text, message):
    with pytest.raises(MatcherError, match=message.replace("(", r"\(")):
        parse_lines(text)


def test_regex_matchers_are_anchored_and_missing_labels_are_empty():
    (m,) = parse_lines('host=~"pool-1"')
    assert m.matches({"host": "pool-1"}) and not m.matches({"host": "pool-10"})
    (empty,) = parse_lines('pool=""')
    assert empty.matches({"host": "a"}) and not empty.matches({"pool": "ergo"})


def test_weekly_windows_cross_midnight():
    window = Recurrence.from_dict({"weekdays": [6], "start": "23:00", "duration_minutes": 120})  # Sunday 23-01
    sunday = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)
    assert window.window_at(sunday) is not None
    assert window.window_at(datetime(2026, 11, 30, 0, 59, tzinfo=UTC)) is not None   # Monday 00:59
    assert window.window_at(datetime(2026, 11, 30, 1, 0, tzinfo=UTC)) is None
    assert window.next_window(sunday)[0] == datetime(2026, 12, 6, 23, 0, tzinfo=UTC)
    assert window.describe() == "every Sun at 23:00 UTC for 2 h 00 min"


@pytest.mark.parametrize(("raw", "message"), [
    ({"weekdays": [], "start": "03:00", "duration_minutes": 60}, "weekdays"),
    ({"weekdays": [7], "start": "03:00", "duration_minutes": 60}, "weekdays"),
    ({"weekdays": [1], "start": "25:00", "duration_minutes": 60}, "start"),
    ({"weekdays": [1], "start": "03:00", "duration_minutes": 0}, "duration_minutes"),
    ({"weekdays": [1], "start": "03:00", "duration_minutes": 60, "tz": "CET"}, "tz: unknown key"),
])
def test_bad_recurrences_are_refused(raw, message):
    with pytest.raises(SilenceError, match=message):
        Recurrence.from_dict(raw)


@pytest.mark.parametrize(("cls", "values", "field", "reason"), [
    (WebhookChannel, {}, "url", "is required"),
    (WebhookChannel, {"url": "http://x", "timeoutSeconds": "999"}, "timeoutSeconds", "between 1 and 60"),
    (WebhookChannel, {"url": "http://x", "authHeaderName": "Content-Type"}, "authHeaderName", "set by poolwarden"),
    (WebhookChannel, {"url": "http://x", "color": "red"}, "color", "unknown setting"),
    (EmailChannel, {"smtpHost": "m", "from": "a@b.org", "to": "x@y.org", "security": "tls"}, "security",
     "must be one of starttls, ssl, none"),
    (EmailChannel, {"smtpHost": "m", "from": "a@b.org", "to": "x@y.org", "password": "p"}, "username",
     "a password is set but no username"),
    (EmailChannel, {"smtpHost": "m", "from": "a@b.org", "to": ""}, "to", "is required"),
])
def test_channel_settings_are_checked(cls, values, field, reason):
    with pytest.raises(FieldError) as caught:
        cls.validate(values)
    assert caught.value.field == field and reason in caught.value.reason

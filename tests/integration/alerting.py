"""What the end-to-end alerting tests share: the inbox pairing webhook and e-mail notifications, the
checks of what an operator reads, and the harness (stack, inbox, a signed-in panel client).

Used by ``test_alerting_e2e.py`` (faults that show at once) and ``test_alerting_e2e_history.py``
(rules that need history: forecasts, baselines, rounds, payouts)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psycopg

from tests.integration.conftest import HOST, control

POOL = "ergo1"
SIGNING_SECRET = "e2e-webhook-signing-secret"
WAIT = 45                        # seconds any one notification may take on a busy 2-core machine


def channels(hook_url: str, smtp_port: int, routes: tuple[dict, ...] = ()) -> dict:
    """integrations.json: a signed webhook and e-mail, every alert in a group of its own, group_wait 0;
    ``routes`` come before the catch-all route."""
    both = ["ops-webhook", "ops-mail"]
    return {
        "defaults": {"groupBy": ["..."], "groupWaitSeconds": 0, "groupIntervalSeconds": 1,
                     "repeatIntervalSeconds": 3600},
        "integrations": [
            {"name": "ops-webhook", "type": "webhook", "url": hook_url, "secret": SIGNING_SECRET},
            {"name": "ops-mail", "type": "email", "smtpHost": "127.0.0.1", "smtpPort": smtp_port,
             "security": "none", "from": "poolwarden@example.org", "to": ["ops@example.org"]},
        ],
        "routes": [*({**r, "integrations": both} for r in routes), {"name": "everything", "integrations": both}],
    }


# -- the channels' side -----------------------------------------------------------------------------


@dataclass
class Delivered:
    """One notification as both channels received it."""

    payload: dict
    alert: dict
    email: object
    received_at: float


class Inbox:
    """What the webhook sink and the SMTP server received, paired by notification (the idempotency
    key is ``g<group>-n<sequence>-c<channel>``: the same group and sequence on both channels)."""

    def __init__(self, hook, smtp, explain=None):
        self.hook, self.smtp = hook, smtp
        self.explain = explain or (lambda _alertname: "")

    def payloads(self, since: float = 0.0) -> list[tuple[float, dict]]:
        return [(r.at, r.json()) for r in list(self.hook.requests) if r.status < 300 and r.at >= since]

    def _mail(self, key: str):
        prefix = key.rsplit("-c", 1)[0] + "-c"
        for message in self.smtp.messages:
            other = message.get("X-Poolwarden-Idempotency-Key", "")
            if other.startswith(prefix) and other != key:
                return message
        return None

    def about(self, alertname: str, since: float = 0.0, **labels: str) -> list[tuple[float, dict, dict]]:
        """(arrival, payload, alert) of every webhook notification carrying this alert."""
        found = []
        for at, payload in self.payloads(since):
            for alert in payload.get("alerts", []):
                got = alert["labels"]
                if got.get("alertname") == alertname and all(got.get(k) == v for k, v in labels.items()):
                    found.append((at, payload, alert))
        return found

    def wait(self, status: str, alertname: str, since: float, timeout: float = WAIT, **labels: str) -> Delivered:
        """The first notification since ``since`` that tells this alert is ``status``, by webhook and e-mail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, payload, alert in self.about(alertname, since, **labels):
                if alert["status"] != status:
                    continue
                email = self._mail(payload["idempotencyKey"])
                if email is not None:
                    return Delivered(payload, alert, email, at)
            time.sleep(0.1)
        seen = [(p.get("status"), [(a["labels"].get("alertname"), a["status"]) for a in p.get("alerts", [])])
                for _at, p in self.payloads(since)]
        raise AssertionError(f"no {status} notification of {alertname} {labels} within {timeout} s "
                             f"(webhook since then: {seen}; {len(self.smtp.envelopes)} e-mails in all); "
                             + self.explain(alertname))


def check_delivery(got: Delivered, status: str, alertname: str) -> None:
    """What the operator reads: the documented JSON, the e-mail's subject, text and HTML."""
    payload, email = got.payload, got.email
    assert payload["kind"] == "alerts" and payload["version"] == "1"
    assert payload["status"] == status
    assert payload["alerts"] == [got.alert]  # every alert in a group of its own
    assert got.alert["labels"]["host"] == HOST
    subject = email["Subject"]
    assert alertname in subject and HOST in subject, subject
    if status == "firing":
        assert subject.startswith(f"[poolwarden] {got.alert['severity'].upper()}: 1 firing"), subject
        assert got.alert["annotations"]["summary"], got.alert
        assert got.alert["endsAt"] is None
    else:
        assert subject.startswith("[poolwarden] RESOLVED: 1 resolved"), subject
        assert got.alert["endsAt"] is not None
    text = email.get_body(("plain",)).get_content()
    html = email.get_body(("html",)).get_content()
    assert alertname in text and alertname in html
    if status == "firing":
        assert got.alert["annotations"]["summary"] in text



class Harness:
    """The stack, the channels and a signed-in panel client, with the steps the scenarios share."""

    def __init__(self, stack, inbox: Inbox, client, agent_wrapper: tuple[str, ...], agent_args: tuple[str, ...]):
        self.stack, self.inbox, self.client = stack, inbox, client
        self.client_lock = threading.Lock()
        self.agent_wrapper, self.agent_args = agent_wrapper, agent_args
        self.agent = None
        self.latencies: dict[str, tuple[float, float | None]] = {}   # alert -> seconds to firing, to resolved

    def start_agent(self) -> None:
        self.agent = self.stack["run_agent"](*self.agent_args, wrapper=self.agent_wrapper)

    def fault(self, name: str, on: bool = True, **params) -> None:
        control(self.stack, "POST" if on else "DELETE", f"/faults/{name}", **params)

    def fires_and_resolves(self, alertname: str, inject, clear, *, labels: dict | None = None,
                           also: tuple[tuple[str, dict], ...] = (), timeout: float = WAIT) -> None:
        """inject(); the alert (and ``also``) must be notified firing; clear(); and resolved."""
        labels = labels or {}
        started = time.time()
        inject()
        got = self.inbox.wait("firing", alertname, started, timeout, **labels)
        check_delivery(got, "firing", alertname)
        self.latencies[alertname] = (round(got.received_at - started, 1), None)
        for name, more in also:
            check_delivery(self.inbox.wait("firing", name, started, timeout, **more), "firing", name)
        cleared = time.time()
        clear()
        got = self.inbox.wait("resolved", alertname, cleared, timeout, **labels)
        check_delivery(got, "resolved", alertname)
        self.latencies[alertname] = (self.latencies[alertname][0], round(got.received_at - cleared, 1))
        for name, more in also:
            check_delivery(self.inbox.wait("resolved", name, cleared, timeout, **more), "resolved", name)

    def post(self, path: str, body: dict):
        from tests.panel.auth_helpers import csrf_token

        with self.client_lock:
            token = csrf_token(self.client.get("/account").get_data(as_text=True))
            return self.client.post(path, json=body, headers={"X-CSRFToken": token})

    def get(self, path: str):
        with self.client_lock:
            return self.client.get(path)

    def db(self) -> psycopg.Connection:
        return psycopg.connect(self.stack["pw_dsn"], autocommit=True)


def explain(dsn: str):
    """What the panel's database says about a rule, for a failure message."""

    def text(alertname: str) -> str:
        with psycopg.connect(dsn, autocommit=True) as conn:
            rule = conn.execute("SELECT id, last_error FROM alert_rules WHERE name = %s", (alertname,)).fetchone()
            alerts = conn.execute("SELECT id, state, labels - 'alertname' - 'host' - 'rule_type', active_since,"
                                  " fired_at, resolved_at FROM alerts WHERE rule_id = %s ORDER BY id",
                                  (rule[0] if rule else None,)).fetchall()
            events = conn.execute("SELECT kind, ts, data->>'height' FROM events ORDER BY ts DESC LIMIT 6").fetchall()
            now = conn.execute("SELECT now()").fetchone()[0]
        return f"the panel at {now}: rule {rule}, its alerts {alerts}; newest events {events}"

    return text


def alert_state(h: Harness, rule: str) -> str | None:
    with h.db() as conn:
        row = conn.execute("SELECT a.state FROM alerts a JOIN alert_rules r ON r.id = a.rule_id WHERE r.name = %s "
                           "ORDER BY a.id DESC LIMIT 1", (rule,)).fetchone()
    return row[0] if row else None


def assert_all_delivered_and_resolved(h: Harness) -> None:
    """At the end: every delivery attempt went out, and no alert is left open."""
    with h.db() as conn:
        failed = conn.execute("SELECT count(*) FROM deliveries WHERE status <> 'sent'").fetchone()[0]
        still_open = conn.execute("SELECT r.name, a.labels FROM alerts a JOIN alert_rules r ON r.id = a.rule_id "
                                  "WHERE a.state <> 'resolved'").fetchall()
    assert failed == 0
    assert still_open == []

"""The maintenance pages: a card per catalogue action with its generated form, the confirmation
that shows exactly what will happen, roles and step-up on the page, CSRF, the job page, schedules
in the editor, and the enrol/key commands."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import pytest

from agent.contract import ACTIONS, explain
from tests.panel.auth_helpers import csrf_token
from tests.panel.maint_helpers import (
    HOST,
    enrol,
    form_post,
    job_row,
    rq_jobs,
)

PAGE = f"/hosts/{HOST}/maintenance"

pytest_plugins = ["tests.panel.maint_fixtures"]  # its fixtures: host_key, ctx, dbconn


def confirm_url(action: str, query: str = "") -> str:
    return f"{PAGE}/{action}/confirm" + (f"?{query}" if query else "")


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def test_one_card_per_catalogue_action_with_inputs_from_its_parameters(auth, host_key):
    auth.login("otto", "operator")
    page = text_of(auth.client.get(PAGE))
    for action in ACTIONS.values():
        assert f'id="action-{action.name}"' in page, action.name
        assert action.title in page
    assert 'name="keep_daily" value="7"' in page and 'min="1"' in page and 'max="365"' in page
    assert re.search(r'<option value="ergo_node"\s*>ergo_node</option>', page)
    assert 'name="tables" value="shares" checked' in page  # vacuum: all tables ticked by default
    assert '<textarea id="update_miningcore_config-config" name="config"' in page
    # the config editor posts (a whole config.json does not fit in a link), with a CSRF token
    card = page[page.index('id="action-update_miningcore_config"'):]
    assert 'method="post"' in card[:1500] and 'name="csrf_token"' in card[:1500]


def test_a_viewer_sees_the_page_but_no_usable_button(auth, host_key):
    auth.login("vera", "viewer")
    page = text_of(auth.client.get(PAGE))
    assert "needs the operator role" in page and page.count("Review…</button>") == len(ACTIONS)
    assert page.count("disabled>Review…") == len(ACTIONS)
    assert auth.client.get(confirm_url("backup")).status_code == 403


def test_the_confirmation_shows_exactly_what_will_happen_then_queues_it(auth, rds, host_key, sql):
    auth.login("otto", "operator")
    query = "database=panel&keep_daily=3&keep_weekly=2"
    raw = auth.client.get(confirm_url("backup", query)).get_data(as_text=True)
    params = {"database": "panel", "keep_daily": 3, "keep_weekly": 2}
    assert f'<blockquote class="explain" id="explain">{explain("backup", params)}</blockquote>' in html.unescape(raw)
    assert rq_jobs(rds) == []  # nothing happens before the button
    change = html.unescape(re.search(r'href="([^"]+)">Change parameters', raw)[1])
    assert 'name="keep_daily" value="3"' in auth.client.get(change).get_data(as_text=True)  # the card, filled again
    hidden = html.unescape(re.search(r'name="params" type="hidden" value="([^"]+)"', raw)[1])
    response = auth.client.post(f"{PAGE}/backup/run", data={"csrf_token": csrf_token(raw), "params": hidden})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"{PAGE}#current-jobs")
    (job,) = rq_jobs(rds)
    assert job.args[0]["params"] == params and job.args[0]["requested_by"] == "user:otto"
    host_page = text_of(auth.client.get(PAGE))
    assert "Back up a database queued on pool-1" in host_page
    (row,) = sql("SELECT id FROM maintenance_jobs")
    assert f'data-job-id="{row[0]}"' in host_page
    job_page = text_of(auth.client.get(f"/maintenance/jobs/{row[0]}"))
    assert "Waiting for a worker to take the job." in job_page and "Cancel job" in job_page


def test_bad_form_values_go_back_to_the_card_with_the_field_named(auth, host_key):
    auth.login("otto", "operator")
    response = auth.client.get(confirm_url("backup", "keep_daily=many"))
    assert response.status_code == 302 and response.headers["Location"].endswith("#action-backup")
    page = text_of(auth.client.get(PAGE))
    assert "Back up a database: keep_daily: must be a whole number, got 'many'" in page
    auth.client.get(confirm_url("vacuum", "tables="))  # every box unticked
    assert "tables: must be a non-empty list" in text_of(auth.client.get(PAGE))


def test_unticked_dry_run_makes_cleanup_destructive_admin_only_and_asks_for_a_fresh_code(auth, host_key, sql):
    auth.login("otto", "operator")
    dry = text_of(auth.client.get(confirm_url("cleanup", "dry_run=false&dry_run=true")))
    assert "Dry run: True" in dry and "Run now" in dry
    assert auth.client.get(confirm_url("cleanup", "dry_run=false")).status_code == 403
    auth.logout()
    auth.login("ada", "admin")
    page = text_of(auth.client.get(confirm_url("cleanup", "dry_run=false")))
    assert "Dry run: False" in page and "Yes, run it now" in page and "destructive" in page
    sql("UPDATE sessions SET data = data - 'step_up_at' WHERE user_id IS NOT NULL")
    response = auth.client.get(confirm_url("cleanup", "dry_run=false"))
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    # after the code, the same confirmation again, with the same parameters
    assert location.path == "/step-up" and parse_qs(location.query)["next"] == [confirm_url("cleanup", "dry_run=false")]


def test_running_without_the_csrf_token_queues_nothing(auth, rds, host_key):
    auth.login("otto", "operator")
    response = auth.client.post(f"{PAGE}/health_check/run", data={"params": "{}"})
    assert response.status_code == 400 and rq_jobs(rds) == []


def test_the_run_button_rechecks_safe_mode_and_key(auth, rds, host_key, sql):
    auth.login("ada", "admin")
    page = text_of(auth.client.get(confirm_url("restart", "service=nginx")))
    token = csrf_token(page)
    sql("INSERT INTO maintenance_host_settings (host, safe_mode, safe_mode_by, safe_mode_reason)"
        " VALUES (%s, true, 'user:bob', 'incident')", (HOST,))
    response = auth.client.post(f"{PAGE}/restart/run", data={"csrf_token": token, "params": '{"service": "nginx"}'})
    assert response.status_code == 302 and rq_jobs(rds) == []
    assert "Restart a service was not queued: safe mode is on for pool-1" in text_of(auth.client.get(PAGE))
    blocked = text_of(auth.client.get(confirm_url("restart", "service=nginx")))
    assert "Cannot be queued: safe mode is on" in blocked and "Yes, run it now" not in blocked


def test_cancel_from_the_page(auth, rds, host_key, sql):
    auth.login("otto", "operator")
    page = text_of(auth.client.get(confirm_url("health_check")))
    auth.client.post(f"{PAGE}/health_check/run", data={"csrf_token": csrf_token(page), "params": "{}"})
    (job_id,) = sql("SELECT id FROM maintenance_jobs")[0]
    response = form_post(auth, PAGE, f"/maintenance/jobs/{job_id}/cancel", {})
    assert response.status_code == 302
    assert job_row(sql, str(job_id))["status"] == "cancelled" and rq_jobs(rds) == []
    assert "cancelled: it will not run" in text_of(auth.client.get(PAGE))


def test_index_lists_hosts_with_their_state(auth, runner, host_key):
    enrol(runner, "pool-2")
    auth.login("vera", "viewer")
    page = text_of(auth.client.get("/maintenance"))
    assert "pool-1" in page and "pool-2" in page and page.count("worker offline") == 2
    assert auth.client.get("/hosts/nowhere/maintenance").status_code == 404
    assert auth.client.get("/maintenance/jobs/12345").status_code == 404


def test_schedule_editor(auth, host_key, sql):
    auth.login("ada", "admin")
    new = "/maintenance/schedules/new?action=backup&host=pool-1"
    page = text_of(auth.client.get(new))
    assert 'name="keep_daily"' in page and "daily at 03:00" in page  # the cadence hint
    data = {"csrf_token": csrf_token(page), "name": "nightly", "host": "pool-1", "action": "backup",
            "cadence": "at night", "enabled": "y", "database": "miningcore", "keep_daily": "5", "keep_weekly": "1"}
    bad = auth.client.post("/maintenance/schedules/new", data=data)
    assert bad.status_code == 400 and "must be &#34;daily at HH:MM&#34;" in bad.get_data(as_text=True)
    good = auth.client.post("/maintenance/schedules/new", data={**data, "cadence": "daily at 02:30"})
    assert good.status_code == 302
    (row,) = sql("SELECT name, cadence, params->>'keep_daily', provisioned FROM maintenance_schedules")
    assert row == ("nightly", "daily at 02:30", "5", False)
    listing = text_of(auth.client.get("/maintenance/schedules"))
    assert "nightly" in listing and "daily at 02:30" in listing
    sql("UPDATE maintenance_schedules SET provisioned = true")
    (schedule_id,) = sql("SELECT id FROM maintenance_schedules")[0]
    view = text_of(auth.client.get(f"/maintenance/schedules/{schedule_id}"))
    assert "comes from the configuration file" in view and "Save schedule" not in view
    assert auth.client.post(f"/maintenance/schedules/{schedule_id}",
                            data={**data, "csrf_token": csrf_token(view)}).status_code == 409


# -- commands -------------------------------------------------------------------------------------------


def test_enrol_makes_an_encrypted_key_and_key_prints_it_again(runner, sql):
    result = runner.invoke(args=["maintenance", "enrol", "pool-9"])
    assert result.exit_code == 0
    key_hex = result.output.splitlines()[0]
    assert re.fullmatch(r"[0-9a-f]{64}", key_hex)
    (stored,) = sql("SELECT key_enc FROM maintenance_host_keys WHERE host = 'pool-9'")[0]
    assert stored.startswith("v1:") and key_hex not in stored
    again = runner.invoke(args=["maintenance", "key", "pool-9"])
    assert again.exit_code == 0 and again.output.strip() == key_hex
    assert sql("SELECT actor FROM audit_log WHERE action = 'maintenance.key_show'") == [("console",)]
    twice = runner.invoke(args=["maintenance", "enrol", "pool-9"])
    assert twice.exit_code == 1 and "already has a job key" in twice.output
    missing = runner.invoke(args=["maintenance", "key", "pool-3"])
    assert missing.exit_code == 1 and "maintenance enrol pool-3" in missing.output


@pytest.mark.parametrize(("content", "words"), [
    ("00" * 32 + "\n", None),
    ("zz" * 32, "does not hold a key in hex"),
    ("ab" * 16 + "a", "does not hold a key in hex"),
    ("ab" * 16, None),
    ("ab" * 8, "8-byte key"),
])
def test_enrol_imports_a_key_file(runner, tmp_path, content, words):
    path = tmp_path / "job.key"
    path.write_text(content)
    result = runner.invoke(args=["maintenance", "enrol", "pool-7", "--key-file", str(path)])
    if words is None:
        assert result.exit_code == 0 and result.output.splitlines()[0] == "".join(content.split())
    else:
        assert result.exit_code == 1 and words in result.output


def test_enrol_writes_a_private_key_file_and_refuses_bad_host_names(runner, tmp_path):
    out = tmp_path / "job.key"
    result = runner.invoke(args=["maintenance", "enrol", "pool-8", "--out", str(out)])
    assert result.exit_code == 0 and "written to" in result.output
    assert re.fullmatch(r"[0-9a-f]{64}\n", out.read_text()) and (out.stat().st_mode & 0o777) == 0o600
    bad = runner.invoke(args=["maintenance", "enrol", "pool 8"])
    assert bad.exit_code == 1 and "is not a host name" in bad.output


def test_job_keys_survive_a_secrets_key_rotation(db_url, redis_url, tmp_path, sql):
    from panel import create_app
    from panel.secretbox import new_key, write_key_file

    key_file = tmp_path / "secrets.key"
    write_key_file(key_file, [new_key()], replace=False)
    app = create_app({"TESTING": True, "SECRET_KEY": "test-secret-key-not-for-production", "DATABASE_URL": db_url,
                      "REDIS_URL": redis_url, "SECRETS_KEY_FILE": str(key_file)})
    runner = app.test_cli_runner()
    job_key = enrol(runner, "pool-5")
    (before,) = sql("SELECT key_enc FROM maintenance_host_keys")[0]
    assert runner.invoke(args=["secrets", "generate-key", "--out", str(tmp_path / "next.key")]).exit_code == 0
    rotated = runner.invoke(args=["secrets", "rotate", "--new-key-file", str(tmp_path / "next.key")])
    assert rotated.exit_code == 0 and "maintenance_host_keys.key_enc 1" in rotated.output
    (after,) = sql("SELECT key_enc FROM maintenance_host_keys")[0]
    assert after.split(":")[1] != before.split(":")[1]
    assert runner.invoke(args=["maintenance", "key", "pool-5"]).output.strip() == job_key.hex()

"""Audit log: chained rows, append-only in the database, tampering by a superuser found by `audit verify`,
the admin page with its filters, and the CSV export."""

from __future__ import annotations

import csv
import io
import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from flask import g

from panel.audit import record_event
from panel.audit.chain import GENESIS_HASH, content_of, row_hash, verify
from tests.panel.security_helpers import create_user, csrf_token, secure_app


@pytest.fixture
def login(app):
    return secure_app(app)


@pytest.fixture
def admin(db_url, login):
    user = create_user(db_url, "alice", "admin")
    login.as_user(user)
    return user


def write(db_url, count, **fields):
    """``count`` rows written outside a request (actor "system")."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        return [record_event(fields.get("action", "test.event"), "thing", str(n), conn=conn, n=n)
                for n in range(1, count + 1)]


def tamper(db_url, *statements, params=None):
    """Run statements as the superuser with triggers off, the way an intruder with DB access would."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        for statement in statements:
            conn.execute(statement, params)


def rows(sql):
    return sql("SELECT id, actor, address, action, object_type, object_id, details, prev_hash, hash"
               " FROM audit_log ORDER BY id")


# -- writing --------------------------------------------------------------------------------------


def test_record_event_writes_chained_rows(db_url, sql):
    written = write(db_url, 3)
    stored = rows(sql)
    assert [r[0] for r in stored] == [1, 2, 3]
    assert stored[0][7] == GENESIS_HASH
    assert stored[1][7] == stored[0][8] and stored[2][7] == stored[1][8]
    assert [r[8] for r in stored] == [w["hash"] for w in written]
    assert stored[0][1:7] == ("system", None, "test.event", "thing", "1", {"n": 1})
    assert sql("SELECT last_id, last_hash FROM audit_chain_head") == [(3, stored[2][8])]
    with psycopg.connect(db_url) as conn:
        assert verify(conn).intact


def test_hash_covers_the_content_and_the_previous_hash(db_url):
    first, second = write(db_url, 2)
    assert row_hash(content_of(second), second["prev_hash"]) == second["hash"]
    assert row_hash({**content_of(second), "actor": "mallory"}, second["prev_hash"]) != second["hash"]
    assert row_hash(content_of(second), GENESIS_HASH) != second["hash"]
    assert first["hash"] == second["prev_hash"]


def test_actor_and_address_come_from_the_request(app, admin, sql):
    with app.test_request_context("/", environ_base={"REMOTE_ADDR": "192.0.2.7"}):
        g.principal = admin
        record_event("user.role_change", "user", "7", before={"role": "viewer"}, after={"role": "admin"})
        g.client_ip = "198.51.100.9"  # set by the allowlist hook from a trusted proxy's X-Forwarded-For
        record_event("login.success", "user", "alice")
        g.principal = None
        record_event("login.failure", "user", "bob", reason="bad password")
    stored = sql("SELECT actor, address, action, before::text, after::text, details::text FROM audit_log ORDER BY id")
    assert stored == [
        ("user:alice", "192.0.2.7", "user.role_change", '{"role":"viewer"}', '{"role":"admin"}', "{}"),
        ("user:alice", "198.51.100.9", "login.success", None, None, "{}"),
        ("anonymous", "198.51.100.9", "login.failure", None, None, '{"reason":"bad password"}'),
    ]


def test_awkward_values_read_back_to_the_same_hash(db_url):
    when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        record_event("x", "user", "nul\x00byte", conn=conn, big=10**30, tiny=1e-30, large=1e300, nan=float("nan"),
                     text="é \u0000 \U0001F600", when=when, tags={"b", "a"}, nested={"z": [1, 2.5, None, True]})
        result = verify(conn)
    assert result.intact, result.problems


def test_a_rolled_back_transaction_leaves_no_gap(db_url):
    write(db_url, 1)
    with psycopg.connect(db_url, autocommit=True) as conn:
        with pytest.raises(RuntimeError), conn.transaction():
            record_event("doomed", conn=conn)
            raise RuntimeError("the change it described failed")
        record_event("after", conn=conn)
        assert [r[0] for r in conn.execute("SELECT id FROM audit_log ORDER BY id")] == [1, 2]
        assert verify(conn).intact


def test_concurrent_writers_never_fork_the_chain(db_url):
    errors = []

    def writer(n):
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                for i in range(25):
                    record_event("load", "writer", str(n), conn=conn, i=i)
        except Exception as exc:  # asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with psycopg.connect(db_url) as conn:
        result = verify(conn)
    assert result.intact and result.rows == 150 and result.last_id == 150


# -- the database refuses changes --------------------------------------------------------------------


@pytest.mark.parametrize("statement", [
    "UPDATE audit_log SET actor = 'mallory' WHERE id = 2",
    "DELETE FROM audit_log WHERE id = 2",
    "TRUNCATE audit_log",
    "UPDATE audit_chain_head SET last_id = 1",
    "DELETE FROM audit_chain_head",
])
def test_the_database_refuses_update_delete_truncate(db_url, sql, statement):
    write(db_url, 3)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append|head moves"):
        sql(statement)
    assert len(rows(sql)) == 3


def test_the_database_refuses_an_insert_that_does_not_extend_the_chain(db_url, sql):
    write(db_url, 2)
    with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="does not extend the chain head"):
        sql("INSERT INTO audit_log (id, ts, actor, action, details, prev_hash, hash)"
            " VALUES (2, now(), 'mallory', 'x', '{}', %s, %s)", (GENESIS_HASH, "a" * 64))


# -- tampering by a superuser is found ------------------------------------------------------------------


def verify_output(runner):
    result = runner.invoke(args=["audit", "verify", "--no-record"])
    return result.exit_code, result.output


def test_verify_reports_an_intact_chain(db_url, login, runner, sql):
    write(db_url, 5)
    code, output = verify_output(runner)
    assert code == 0, output
    assert "audit chain intact: 5 rows, ids 1..5" in output
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0
    assert sql("SELECT actor, action, details->>'intact' FROM audit_log WHERE id = 6") == [
        ("system", "audit.verify", "true")]


def test_verify_an_empty_log(login, runner):
    assert verify_output(runner) == (0, "audit chain intact: no rows yet\n")


@pytest.mark.parametrize("statements, expected", [
    (["UPDATE audit_log SET actor = 'mallory' WHERE id = 3"],
     ["changed: row 3 was changed"]),
    (["UPDATE audit_log SET details = '{\"n\": 99}' WHERE id = 5"],
     ["changed: row 5 was changed"]),
    (["DELETE FROM audit_log WHERE id = 3"],
     ["removed: row 3 was removed (the log jumps from row 2 to row 4)"]),
    (["DELETE FROM audit_log WHERE id IN (3, 4)"],
     ["removed: rows 3..4 were removed"]),
    (["DELETE FROM audit_log WHERE id = 1"],
     ["removed: row 1 was removed"]),
    (["DELETE FROM audit_log WHERE id = 3", "UPDATE audit_log SET id = id - 1 WHERE id > 3"],
     ["removed: row 3 does not chain to row 2"]),
    (["UPDATE audit_log SET id = 1003 WHERE id = 3", "UPDATE audit_log SET id = 3 WHERE id = 4",
      "UPDATE audit_log SET id = 4 WHERE id = 1003"],
     ["reordered: row 3 is out of order: it chains after row 4"]),
    (["DELETE FROM audit_log WHERE id = 6"],
     ["removed: row 6 was removed from the end (the chain head names row 6)"]),
    (["TRUNCATE audit_log"],
     ["removed: rows 1..6 were removed from the end"]),
])
def test_verify_names_each_tampered_row(db_url, login, runner, statements, expected):
    write(db_url, 6)
    tamper(db_url, *statements)
    code, output = verify_output(runner)
    assert code == 1, output
    for line in expected:
        assert line in output
    assert "audit chain TAMPERED" in output


def test_verify_finds_a_row_inserted_with_a_valid_hash(db_url, login, runner, sql):
    """The intruder shifts rows 3.. up by one and slips in a row that chains correctly to row 2."""
    written = write(db_url, 5)
    forged = {**written[1], "id": 3, "actor": "user:alice", "action": "user.role_change", "object_id": "mallory",
              "details": {}, "prev_hash": written[1]["hash"]}
    forged["hash"] = row_hash(content_of(forged), forged["prev_hash"])
    tamper(db_url, "UPDATE audit_log SET id = id + 100 WHERE id >= 3",
           "UPDATE audit_log SET id = id - 99 WHERE id > 100")
    tamper(db_url, "INSERT INTO audit_log (id, ts, actor, action, object_type, object_id, details, prev_hash, hash)"
                   " VALUES (%(id)s, %(ts)s, %(actor)s, %(action)s, %(object_type)s, %(object_id)s, '{}',"
                   " %(prev_hash)s, %(hash)s)", params=forged)
    code, output = verify_output(runner)
    assert code == 1
    assert "inserted: row 3 was inserted: row 4 chains to the row before it" in output


def test_verify_finds_a_row_changed_and_rehashed(db_url, login, runner):
    written = write(db_url, 4)
    changed = {**written[2], "actor": "user:mallory"}
    new_hash = row_hash(content_of(changed), changed["prev_hash"])
    tamper(db_url, "UPDATE audit_log SET actor = 'user:mallory', hash = %s WHERE id = 3", params=(new_hash,))
    code, output = verify_output(runner)
    assert code == 1
    assert "row 4 does not chain to row 3" in output and "row 3 replaced and re-hashed" in output


def test_verify_finds_tampering_with_the_trigger_disabled(db_url, login, runner, pg):
    """ALTER TABLE ... DISABLE TRIGGER, as the table owner or a superuser may."""
    write(db_url, 4)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        conn.execute("UPDATE audit_log SET object_id = 'other' WHERE id = 2")
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    code, output = verify_output(runner)
    assert code == 1 and "changed: row 2 was changed" in output


# -- the page and the CSV export ------------------------------------------------------------------------


def seed_for_filters(app, admin):
    with app.test_request_context("/", environ_base={"REMOTE_ADDR": "192.0.2.1"}):
        g.principal = admin
        record_event("user.create", "user", "bob", after={"role": "viewer"})
        record_event("user.role_change", "user", "bob", before={"role": "viewer"}, after={"role": "operator"})
        record_event("allowlist.change", "allowlist", None, after={"cidrs": ["10.0.0.0/8"]})
        g.principal = None
        record_event("login.failure", "user", "=HYPERLINK(\"http://evil\")", reason="unknown user")


def test_audit_page_needs_admin(client, db_url, login):
    login.as_user(create_user(db_url, "victor", "viewer"))
    response = client.get("/audit")
    assert response.status_code == 403
    assert client.get("/audit.csv").status_code == 403


def test_audit_page_lists_and_filters(app, client, admin):
    seed_for_filters(app, admin)
    page = client.get("/audit").get_data(as_text=True)
    assert "user.role_change" in page and "allowlist.change" in page and "login.failure" in page
    assert "Chain not verified yet" in page

    page = client.get("/audit?action=user").get_data(as_text=True)
    assert "user.create" in page and "user.role_change" in page and "allowlist.change" not in page

    page = client.get("/audit?actor=anonym").get_data(as_text=True)
    assert "login.failure" in page and "user.create" not in page

    page = client.get("/audit?object_type=user&object_id=bob").get_data(as_text=True)
    assert "user.create" in page and "login.failure" not in page and "allowlist.change" not in page

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    assert "No audit rows match" in client.get(f"/audit?since={tomorrow}").get_data(as_text=True)
    assert "No audit rows match" in client.get(f"/audit?until={yesterday}").get_data(as_text=True)
    assert "user.create" in client.get(f"/audit?since={yesterday}&until={tomorrow}").get_data(as_text=True)

    bad = client.get(f"/audit?since={tomorrow}&until={yesterday}").get_data(as_text=True)
    assert "&#39;To&#39; is before &#39;From&#39;." in bad or "'To' is before 'From'." in bad


def test_audit_page_pages(app, client, admin, db_url):
    write(db_url, 120)
    first = client.get("/audit").get_data(as_text=True)
    assert "Older →" in first and "← Newer" not in first
    assert '<td class="r mono">120</td>' in first and '<td class="r mono">71</td>' in first
    assert '<td class="r mono">70</td>' not in first
    third = client.get("/audit?page=3").get_data(as_text=True)
    assert '<td class="r mono">20</td>' in third and "Older →" not in third and "← Newer" in third
    assert client.get("/audit?page=abc").status_code == 200


def test_csv_export_has_every_column_and_honours_filters(app, client, admin):
    seed_for_filters(app, admin)
    response = client.get("/audit.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    table = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [r["id"] for r in table] == ["1", "2", "3", "4"]
    assert list(table[0]) == ["id", "ts", "actor", "address", "action", "object_type", "object_id", "before",
                              "after", "details", "prev_hash", "hash"]
    assert table[1]["actor"] == "user:alice" and table[1]["address"] == "192.0.2.1"
    assert table[1]["before"] == '{"role": "viewer"}' and table[1]["after"] == '{"role": "operator"}'
    assert table[1]["prev_hash"] == table[0]["hash"]
    assert table[3]["object_id"] == "'=HYPERLINK(\"http://evil\")"  # a spreadsheet will not run it

    filtered = client.get("/audit.csv?action=user.role_change").get_data(as_text=True)
    assert [r["action"] for r in csv.DictReader(io.StringIO(filtered))] == ["user.role_change"]
    assert client.get("/audit.csv?since=not-a-date").status_code == 400


def test_verify_now_records_the_state_shown_on_the_page(app, client, admin, db_url):
    write(db_url, 3)
    page = client.get("/audit").get_data(as_text=True)
    assert client.post("/audit/verify").status_code in (302, 400)  # no CSRF token: nothing happens
    assert "Chain not verified yet" in client.get("/audit").get_data(as_text=True)
    response = client.post("/audit/verify", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 302
    page = client.get("/audit").get_data(as_text=True)
    assert "chain intact" in page and "by user:alice" in page and "3 rows" in page

    tamper(db_url, "UPDATE audit_log SET actor = 'x' WHERE id = 2")
    client.post("/audit/verify", data={"csrf_token": csrf_token(page)})
    page = client.get("/audit").get_data(as_text=True)
    assert "chain tampered" in page and "changed: row 2 was changed" in page

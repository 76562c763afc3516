"""alerts.json: checked whole with messages naming the field and the reason, imported at start as
provisioned rules, a refused file leaving the previous rules in force, export giving the same shape
back, and the ``alerts check|import|export`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from panel.alerts.config import ConfigInvalid, builtin_rules, export_document, parse_document
from panel.alerts.evaluator import Evaluator
from panel.alerts.store import load_rules
from panel.engine.tasks import TaskContext

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "alerts.json"


def definitions(rules):
    return {r.name: r.definition() for r in rules}


def test_the_example_file_is_every_built_in_rule_with_its_defaults():
    document = json.loads(EXAMPLE.read_text())
    assert definitions(parse_document(document)) == definitions(builtin_rules())
    types = {body["type"] for body in document["alerts"].values()}
    from panel.alerts.types import TYPES

    assert types == set(TYPES)       # every type has at least one rule in the example


def test_export_gives_back_what_parses_to_the_same_rules():
    rules = parse_document({"alerts": {
        "rootDisk": {"type": "disk_usage", "warningPercent": 70, "clearPercent": 65, "for": "90s",
                     "matchers": ['mount="/"'],
                     "labels": {"team": "ops"}, "annotations": {"summary": "{mount} at {value}"}},
        "load": {"type": "threshold", "metric": "poolwarden_load1", "op": ">=", "threshold": 8, "clear": 6,
                 "window": "5m", "enabled": False},
    }})
    exported = export_document(rules)
    assert exported["alerts"]["rootDisk"]["for"] == "1m30s"
    assert exported["alerts"]["load"]["window"] == "5m"
    assert definitions(parse_document(json.loads(json.dumps(exported)))) == definitions(rules)


@pytest.mark.parametrize(("document", "field", "reason"), [
    ([], "(document)", "must be a JSON object"),
    ({"rules": {}}, "rules", "unknown key"),
    ({"alerts": {"x": {"type": "disk_full"}}}, "alerts.x.type", "unknown rule type 'disk_full'"),
    ({"alerts": {"x": {"type": "disk_usage", "warningPercent": "80%"}}}, "alerts.x.warningPercent",
     "must be a number, got '80%'"),
    ({"alerts": {"x": {"type": "disk_usage", "warningPercent": 120}}}, "alerts.x.warningPercent",
     "must be at most 100, got 120"),
    ({"alerts": {"x": {"type": "disk_usage", "warningPercent": 95}}}, "alerts.x.warningPercent",
     "must be at most criticalPercent (90), got 95"),
    ({"alerts": {"x": {"type": "cpu_high", "maxPercent": 90, "clearPercent": 95}}}, "alerts.x.clearPercent",
     "must be at most maxPercent (90), got 95"),
    ({"alerts": {"x": {"type": "cpu_high", "for": "5 minutes"}}}, "alerts.x.for", "must be a duration like"),
    ({"alerts": {"x": {"type": "cpu_high", "severity": "high"}}}, "alerts.x.severity",
     "must be one of info, warning, critical"),
    ({"alerts": {"x": {"type": "cpu_high", "maxPercnt": 80}}}, "alerts.x.maxPercnt",
     "unknown setting for a cpu_high rule (its parameters: maxPercent, clearPercent"),
    ({"alerts": {"x": {"type": "threshold", "op": ">"}}}, "alerts.x.metric", "is required"),
    ({"alerts": {"x": {"type": "threshold", "metric": "load avg", "threshold": 1}}}, "alerts.x.metric",
     "is not a metric name"),
    ({"alerts": {"x": {"type": "threshold", "metric": "m", "threshold": 5, "op": "<", "clear": 2}}},
     "alerts.x.clear", "must be at least threshold (5) with op <"),
    ({"alerts": {"x": {"type": "cpu_high", "matchers": ["mount ~ /boot"]}}}, "alerts.x.matchers[0]",
     "is not 'label op value'"),
    ({"alerts": {"x": {"type": "cpu_high", "matchers": ["mount=~(unclosed"]}}}, "alerts.x.matchers[0]",
     "not a valid regular expression"),
    ({"alerts": {"x": {"type": "cpu_high", "labels": {"severity": "high"}}}}, "alerts.x.labels.severity",
     "is set by the rule itself"),
    ({"alerts": {"x": {"type": "cpu_high", "annotations": {"title": "t"}}}}, "alerts.x.annotations.title",
     "unknown annotation"),
    ({"alerts": {"9lives": {"type": "cpu_high"}}}, "alerts.9lives", "a rule name starts with a letter"),
    ({"alerts": {"x": {"type": "no_block", "hoursThreshold": 0}}}, "alerts.x.hoursThreshold",
     "must be at least 0.1"),
    ({"alerts": {"x": {"type": "component_growth", "include": ["logs"]}}}, "alerts.x.include",
     "must be a non-empty list of components, tables"),
])
def test_invalid_documents_are_refused_naming_the_field_and_the_reason(document, field, reason):
    with pytest.raises(ConfigInvalid) as refused:
        parse_document(document, "alerts.json")
    matching = [r for f, r in refused.value.problems if f == field]
    assert matching, refused.value.problems
    assert reason in matching[0]
    assert str(refused.value).startswith("alerts.json refused, previous rules stay in force: ")
    assert field in str(refused.value)


def test_every_problem_of_a_document_is_reported_at_once():
    with pytest.raises(ConfigInvalid) as refused:
        parse_document({"alerts": {"a": {"type": "cpu_high", "maxPercent": -1},
                                   "b": {"type": "nope"}, "c": {"type": "disk_usage", "for": -5}}})
    assert [f for f, _ in refused.value.problems] == ["alerts.a.maxPercent", "alerts.b.type", "alerts.c.for"]


# -- provisioning at start, and a refused file -----------------------------------------------------


@pytest.fixture
def conn(db_url):
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


def write(path: Path, document) -> None:
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)


def test_the_engine_provisions_the_file_and_keeps_the_previous_rules_when_it_becomes_invalid(
        conn, db_url, redis_url, tmp_path, caplog):
    import redis

    path = tmp_path / "alerts.json"
    write(path, {"alerts": {"rootDisk": {"type": "disk_usage", "warningPercent": 85, "criticalPercent": 95},
                            "cpu": {"type": "cpu_high"}}})
    ctx = TaskContext(db_url, redis.Redis.from_url(redis_url))
    evaluator = Evaluator(rules_path=str(path))
    evaluator.tick(ctx)
    rules = {r.name: r for r in load_rules(conn)}
    assert set(rules) == {"rootDisk", "cpu"} and all(r.provisioned for r in rules.values())
    assert rules["rootDisk"].params["warningPercent"] == 85

    # An operator breaks the file: refused with a message naming the field, the rules stay.
    write(path, {"alerts": {"rootDisk": {"type": "disk_usage", "warningPercent": "lots"}}})
    evaluator._next_file_check = 0
    evaluator.tick(ctx)
    assert definitions(load_rules(conn)) == definitions(rules.values())
    error = conn.execute("SELECT error FROM alert_provisioning").fetchone()[0]
    assert "alerts.rootDisk.warningPercent: must be a number, got 'lots'" in error
    assert "previous rules stay in force" in error
    assert "alerts.rootDisk.warningPercent" in caplog.text

    # Not JSON at all: the same.
    write(path, '{"alerts": {')
    evaluator._next_file_check = 0
    evaluator.tick(ctx)
    assert set(definitions(load_rules(conn))) == {"rootDisk", "cpu"}
    assert "not valid JSON" in conn.execute("SELECT error FROM alert_provisioning").fetchone()[0]

    # Fixed: applied, the error cleared, a rule no longer in the file removed.
    write(path, {"alerts": {"rootDisk": {"type": "disk_usage", "warningPercent": 70, "clearPercent": 60}}})
    evaluator._next_file_check = 0
    evaluator.tick(ctx)
    assert [(r.name, r.params["warningPercent"]) for r in load_rules(conn)] == [("rootDisk", 70)]
    assert conn.execute("SELECT error FROM alert_provisioning").fetchone()[0] is None
    actions = [a for (a,) in conn.execute("SELECT action FROM audit_log WHERE action LIKE 'alerts.%' ORDER BY id")]
    assert actions == ["alerts.provision", "alerts.provision_refused", "alerts.provision_refused",
                       "alerts.provision"]
    ctx.reset()


def test_without_a_file_the_engine_provisions_the_built_in_rules(conn, db_url, redis_url, monkeypatch):
    import redis

    monkeypatch.delenv("POOLWARDEN_ALERTS_CONFIG", raising=False)
    from panel.alerts.evaluator import make_task

    task = make_task({"STALE_AFTER_SECONDS": 60})
    assert task.name == "alerts" and task.every_seconds == 5
    ctx = TaskContext(db_url, redis.Redis.from_url(redis_url))
    task.run(ctx)
    assert definitions(load_rules(conn)) == definitions(builtin_rules())
    assert conn.execute("SELECT path FROM alert_provisioning").fetchone()[0] == "(built-in rules)"
    ctx.reset()


def test_the_engine_runs_the_alert_task(monkeypatch, tmp_path):
    from panel.engine.tasks import default_tasks

    assert "alerts" in [t.name for t in default_tasks({})]


# -- commands ------------------------------------------------------------------------------------


def test_check_command_names_every_problem_and_exits_1(runner, tmp_path):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    write(good, {"alerts": {"cpu": {"type": "cpu_high"}, "off": {"type": "node_down", "enabled": False}}})
    write(bad, {"alerts": {"cpu": {"type": "cpu_high", "maxPercent": 900}, "x": {"type": "y"}}})
    result = runner.invoke(args=["alerts", "check", str(good)])
    assert result.exit_code == 0, result.output
    assert "2 rules (1 enabled), all valid" in result.output
    result = runner.invoke(args=["alerts", "check", str(bad)])
    assert result.exit_code == 1
    assert "alerts.cpu.maxPercent: must be at most 100, got 900" in result.output
    assert "alerts.x.type: unknown rule type 'y'" in result.output
    assert "would be refused (2 problems)" in result.output


def test_import_and_export_commands(runner, conn, tmp_path):
    path = tmp_path / "alerts.json"
    write(path, {"alerts": {"cpu": {"type": "cpu_high", "maxPercent": 95}}})
    result = runner.invoke(args=["alerts", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "1 created" in result.output
    out = tmp_path / "out.json"
    result = runner.invoke(args=["alerts", "export", "-o", str(out)])
    assert result.exit_code == 0, result.output
    exported = json.loads(out.read_text())
    assert exported["alerts"]["cpu"]["maxPercent"] == 95 and exported["alerts"]["cpu"]["type"] == "cpu_high"
    write(path, {"alerts": {"cpu": {"type": "cpu_high", "maxPercent": "high"}}})
    result = runner.invoke(args=["alerts", "import", str(path)])
    assert result.exit_code == 1
    assert "alerts.cpu.maxPercent" in result.output
    assert [r.params["maxPercent"] for r in load_rules(conn)] == [95]
    result = runner.invoke(args=["alerts", "export", "--builtin"])
    assert definitions(parse_document(json.loads(result.output))) == definitions(builtin_rules())


def test_the_docs_explain_every_rule_type_and_parameter():
    from panel.alerts.types import TYPES

    docs = (Path(__file__).resolve().parents[2] / "docs" / "alerts.md").read_text()
    for kind in TYPES.values():
        assert f"### `{kind.name}`" in docs, kind.name
        section = docs.split(f"### `{kind.name}`", 1)[1].split("\n### ", 1)[0]
        for param in kind.params:
            assert f"| `{param.name}` |" in section, (kind.name, param.name)
        for default in kind.defaults:
            assert f"`{default['name']}`" in section, (kind.name, default["name"])

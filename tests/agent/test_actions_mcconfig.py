"""update_miningcore_config: refused when it would obviously break Miningcore; otherwise the previous
file is kept, the new one written atomically (same mode and owner, through a symlink), Miningcore
restarted (a busybox container with the file bind-mounted like the reference deployment's), and
rolled back when the pool (poolsim's API) is not healthy in time."""

from __future__ import annotations

import copy
import json
import os
import stat
from pathlib import Path

import pytest
import requests

from agent.actions import ActionContext, ActionFailed
from agent.actions.mcconfig import (
    BACKUPS_KEPT,
    config_diff,
    keep_backup,
    run_update_miningcore_config,
    validate_miningcore_config,
)
from agent.contract import ParamError, validate_params
from tests.agent.test_actions_services import (
    SERVICE_CMD,
    clear_faults,
    fault,
    make_config,
    module_poolsim,
    private_engine,
)

BASE = {
    "logging": {"level": "info", "enableConsoleLog": True, "logBaseDirectory": "/app/logs",
                "logFile": "miningcore.log", "apiLogFile": "api.log", "perPoolLogFile": True},
    "banning": {"manager": "Integrated", "banOnJunkReceive": True, "banOnInvalidShares": False},
    "notifications": {"enabled": False,
                      "email": {"host": "smtp.example.org", "port": 587, "user": "pool", "password": "mail-secret",
                                "fromAddress": "pool@example.org", "fromName": "Ergo pool"},
                      "admin": {"enabled": False, "emailAddress": "", "notifyBlockFound": False}},
    "persistence": {"postgres": {"host": "127.0.0.1", "port": 5444, "user": "miningcore",
                                 "password": "old-db-secret", "database": "miningcore"}},
    "paymentProcessing": {"enabled": True, "interval": 600},
    "api": {"enabled": True, "listenAddress": "127.0.0.1", "port": 4000, "rateLimiting": {"disabled": True}},
    "pools": [{
        "id": "ergo1", "enabled": True, "coin": "ergo",
        "address": "9fE5o7913CKKe6wvNgM11vULjTuKiopPcvCaj7t2zcJWXM2gcLu",
        "rewardRecipients": [], "blockRefreshInterval": 500, "jobRebroadcastTimeout": 30,
        "clientConnectionTimeout": 600,
        "ports": {"4074": {"listenAddress": "0.0.0.0", "difficulty": 0.01,
                           "varDiff": {"minDiff": 0.001, "targetTime": 15, "retargetTime": 90,
                                       "variancePercent": 30, "maxDelta": 500}},
                  "4075": {"listenAddress": "0.0.0.0", "difficulty": 0.1}},
        "daemons": [{"host": "127.0.0.1", "port": 9053, "apiKey": "node-key"}],
        "paymentProcessing": {"enabled": True, "minimumPayment": 0.1, "payoutScheme": "SOLO",
                              "walletPassword": "wallet-secret"},
    }],
}


def dump(data: dict) -> str:
    return json.dumps(data, indent=2) + "\n"


def changed(**edits) -> dict:
    data = copy.deepcopy(BASE)
    for key, value in edits.items():
        data[key] = value
    return data


def params(data: dict | str, rollback_after: int = 10) -> dict:
    text = data if isinstance(data, str) else dump(data)
    return validate_params("update_miningcore_config", {"config": text, "rollback_after_seconds": rollback_after})


def install(tmp_path: Path, mode: int = 0o640, owner: tuple[int, int] = (1000, 1000)) -> tuple[Path, Path]:
    """The operator's file ``ergo-solo.json`` and ``config.json`` pointing to it, like a compose setup."""
    directory = tmp_path / "miningcore-config"
    directory.mkdir()
    real = directory / "ergo-solo.json"
    real.write_text(dump(BASE))
    os.chmod(real, mode)
    os.chown(real, *owner)
    link = directory / "config.json"
    link.symlink_to(real.name)
    return link, real


# --- refusals and the parts (fast) ---------------------------------------------------------------


def _pool(**edits) -> dict:
    data = copy.deepcopy(BASE)
    data["pools"][0].update(edits)
    return data


def _without_pool_key(key: str) -> dict:
    data = copy.deepcopy(BASE)
    del data["pools"][0][key]
    return data


def _daemon_without_key() -> dict:
    data = copy.deepcopy(BASE)
    del data["pools"][0]["daemons"][0]["apiKey"]
    return data


def _two_pools_same_port() -> dict:
    data = copy.deepcopy(BASE)
    second = copy.deepcopy(data["pools"][0])
    second["id"] = "ergo2"
    second["ports"] = {"4074": {"difficulty": 1}}
    data["pools"].append(second)
    return data


def _duplicate_id() -> dict:
    data = copy.deepcopy(BASE)
    second = copy.deepcopy(data["pools"][0])
    second["ports"] = {"4080": {"difficulty": 1}}
    data["pools"].append(second)
    return data


REFUSED = [
    (changed(pools=[]), "pools: must be a non-empty list"),
    (_without_pool_key("ports"), "pools[0] (ergo1).ports: must be an object of stratum ports"),
    (_pool(ports={"40x4": {"difficulty": 1}}), "'40x4' is not a port number between 1 and 65535"),
    (_pool(ports={"4074": {"difficulty": 0}}), "pools[0] (ergo1).ports.4074.difficulty: must be a number above 0"),
    (_without_pool_key("coin"), "pools[0] (ergo1).coin: required"),
    (_pool(daemons=[]), "pools[0] (ergo1).daemons: must be a non-empty list"),
    (_pool(daemons=[{"host": "127.0.0.1", "port": "9053", "apiKey": "k"}]), "daemons[0]: needs a host and a port"),
    (_daemon_without_key(), "pools[0] (ergo1).daemons[0].apiKey: required when payments are enabled"),
    (changed(persistence={"postgres": "127.0.0.1:5444"}), "persistence.postgres: must be an object"),
    ({k: v for k, v in BASE.items() if k != "persistence"}, "payments are enabled but persistence.postgres is missing"),
    (_pool(enabled=False), 'no pool has "enabled": true'),
    (_without_pool_key("enabled"), 'no pool has "enabled": true'),
    (_pool(paymentProcessing={"enabled": True, "payoutScheme": "PPS"}), "must be one of PPLNS, PROP, SOLO, PPLNSBF"),
    (_duplicate_id(), "pool id 'ergo1' is used twice"),
    (_two_pools_same_port(), "port 4074 is also used by pool ergo1"),
    (changed(api={"enabled": False}), "api.enabled: false would switch off the API"),
    (changed(api={"enabled": True, "port": 4001}), "api.port: changes from 4000 to 4001"),
    (changed(notifications={"admin": {"enabled": True}, "email": {"fromName": "x"}}),
     "notifications.email.fromAddress, notifications.admin.emailAddress: required"),
]


@pytest.mark.parametrize(("data", "reason"), REFUSED)
def test_what_would_break_miningcore_is_refused_and_nothing_changes(tmp_path, data, reason):
    link, real = install(tmp_path)
    config = make_config(tmp_path, api_url="http://127.0.0.1:1", node_url="http://127.0.0.1:1",
                         config_file=str(link), services={"miningcore": {"container": "not-contacted"}})
    before = real.read_text()
    with pytest.raises(ActionFailed) as info:
        run_update_miningcore_config(ActionContext(host="pool-test", config=config), params(data))
    assert info.value.message.startswith("the new config.json was refused, nothing was changed: ")
    assert reason in info.value.message
    assert info.value.details["diff"]  # the operator sees what they tried
    assert real.read_text() == before
    assert sorted(p.name for p in real.parent.iterdir()) == ["config.json", "ergo-solo.json"]


def test_not_json_never_reaches_the_agent():
    with pytest.raises(ParamError, match="is not valid JSON: line 1 column"):
        validate_params("update_miningcore_config", {"config": "{ // Miningcore's comments\n}"})


def test_warnings_for_what_miningcore_ignores():
    data = _pool(extra={"maxActiveJobs": 12},
                 paymentProcessing={"enabled": True, "payoutScheme": "PPLNS", "shareRecoveryFile": "r.txt",
                                    "extra": {"walletPassword": "x", "minimumConfirmations": 720}})
    errors, warnings = validate_miningcore_config(data, BASE, watched_pools=("ergo1", "ergo-old"))
    assert errors == []
    assert warnings == [
        "pools[0] (ergo1).extra: Miningcore ignores a nested \"extra\" object; put its keys (maxActiveJobs) "
        "directly in pools[0] (ergo1)",
        "pools[0] (ergo1).paymentProcessing.extra: Miningcore ignores a nested \"extra\" object; put its keys "
        "(walletPassword, minimumConfirmations) directly in pools[0] (ergo1).paymentProcessing",
        "pools[0] (ergo1).paymentProcessing.shareRecoveryFile is ignored: it belongs at the top level",
        "pool.json's miningcore.poolIds watches 'ergo-old', which this file does not run"]


def test_diff_masks_secret_values():
    new = copy.deepcopy(BASE)
    new["persistence"]["postgres"]["password"] = "new-db-secret"
    new["pools"][0]["ports"]["4075"]["difficulty"] = 0.5
    diff, added, removed = config_diff(dump(BASE), dump(new), "/etc/mc/config.json")
    assert (added, removed) == (2, 2)
    assert "old-db-secret" not in diff and "new-db-secret" not in diff
    assert '-      "password": "***",' in diff and '+      "password": "***",' in diff
    assert '-          "difficulty": 0.1\n' in diff and '+          "difficulty": 0.5\n' in diff
    assert diff.startswith("--- /etc/mc/config.json (current)\n+++ /etc/mc/config.json (new)\n")


def test_backups_keep_the_newest_and_never_touch_other_files(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{}\n")
    ours = [tmp_path / f"config.json.2024010{i}T000000Z.bak" for i in range(1, 8)]
    for old in ours:
        old.write_text("old\n")
    (tmp_path / "config.json.before-upgrade.bak").write_text("the operator's\n")
    backup, removed = keep_backup(str(path), path.stat())
    assert Path(backup).read_text() == "{}\n"
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".bak"))
    assert len([n for n in left if n != "config.json.before-upgrade.bak"]) == BACKUPS_KEPT
    assert "config.json.before-upgrade.bak" in left and Path(backup).name in left
    assert sorted(removed) == sorted(str(p) for p in ours[:3])


def test_missing_settings_and_files_are_refused(tmp_path):
    no_file = make_config(tmp_path / "a", api_url="http://127.0.0.1:1", node_url="http://127.0.0.1:1",
                          services={"miningcore": {"container": "mc"}})
    with pytest.raises(ActionFailed, match="miningcore.configFile is not set in pool.json") as info:
        run_update_miningcore_config(ActionContext(host="h", config=no_file), params(BASE))
    assert info.value.details == {"missing_config": "miningcore.configFile"}
    no_service = make_config(tmp_path / "b", api_url="http://127.0.0.1:1", node_url="http://127.0.0.1:1",
                             config_file=str(tmp_path / "config.json"))
    with pytest.raises(ActionFailed, match="add services.miningcore to pool.json"):
        run_update_miningcore_config(ActionContext(host="h", config=no_service), params(BASE))
    absent = make_config(tmp_path / "c", api_url="http://127.0.0.1:1", node_url="http://127.0.0.1:1",
                         config_file=str(tmp_path / "config.json"), services={"miningcore": {"container": "mc"}})
    with pytest.raises(ActionFailed, match="config.json does not exist: poolwarden only replaces an existing"):
        run_update_miningcore_config(ActionContext(host="h", config=absent), params(BASE))


def test_identical_file_is_not_rewritten_and_miningcore_not_restarted(tmp_path):
    link, real = install(tmp_path)
    inode = real.stat().st_ino
    # Docker is unreachable: a restart attempt would fail the action
    config = make_config(tmp_path, api_url="http://127.0.0.1:1", node_url="http://127.0.0.1:1",
                         config_file=str(link), services={"miningcore": {"container": "mc"}})
    result = run_update_miningcore_config(ActionContext(host="h", config=config), params(BASE))
    assert result["summary"] == "config.json unchanged: nothing written, Miningcore not restarted"
    assert real.stat().st_ino == inode and len(list(real.parent.iterdir())) == 2


# --- against a private dockerd and poolsim -------------------------------------------------------


@pytest.fixture(scope="module")
def engine(session_dir):
    with private_engine(session_dir, "dockerd-mcconfig") as parts:
        yield parts


@pytest.fixture(scope="module")
def sim_module(pg):
    with module_poolsim(pg, f"mcconfig_sim_{os.getpid()}") as sim:
        yield sim


@pytest.fixture
def sim(sim_module):
    clear_faults(sim_module)
    yield sim_module
    clear_faults(sim_module)


@pytest.fixture
def pool_host(tmp_path, engine, sim):
    """The operator's config files, a "Miningcore" container reading the file through a single-file
    bind mount, and the agent configuration pointing at them and at poolsim's API."""
    dockerd, client, image = engine
    link, real = install(tmp_path)
    container = client.containers.run(image, SERVICE_CMD, detach=True, name="ergo-miningcore-solo",
                                      network_mode="none", volumes={str(real): {"bind": "/app/config.json",
                                                                                "mode": "ro"}})
    config = make_config(tmp_path, api_url=sim["api"], node_url=sim["node"], docker_url=dockerd.url,
                         config_file=str(link), pool_ids=("ergo1",),
                         services={"miningcore": {"container": "ergo-miningcore-solo"}})
    yield config, link, real, container
    container.remove(force=True)


def seen_by_container(container) -> str:
    return container.exec_run(["cat", "/app/config.json"]).output.decode()


@pytest.mark.slow
def test_update_keeps_the_new_file_when_the_pool_is_healthy(pool_host):
    config, link, real, container = pool_host
    new = copy.deepcopy(BASE)
    new["pools"][0]["ports"]["4075"]["difficulty"] = 0.5
    new["persistence"]["postgres"]["password"] = "new-db-secret"
    before = real.stat()
    ctx = ActionContext(host="pool-test", config=config)
    result = run_update_miningcore_config(ctx, params(new))

    assert result["summary"].startswith("config.json updated (+2 -2 lines); Miningcore restarted and healthy after ")
    assert real.read_text() == dump(new)
    assert link.is_symlink() and os.readlink(link) == "ergo-solo.json"
    after = real.stat()
    assert after.st_ino != before.st_ino  # replaced by rename, never written in place
    assert stat.S_IMODE(after.st_mode) == 0o640 and (after.st_uid, after.st_gid) == (1000, 1000)
    backup = Path(result["backup"])
    assert backup.parent == real.parent and backup.name.startswith("ergo-solo.json.")
    assert backup.read_text() == dump(BASE)
    assert (backup.stat().st_uid, stat.S_IMODE(backup.stat().st_mode)) == (1000, 0o640)
    assert "new-db-secret" not in result["diff"] and '+          "difficulty": 0.5' in result["diff"]
    assert not [p for p in real.parent.iterdir() if p.name.endswith(".poolwarden-tmp")]
    # the restarted container reads the new file through its single-file bind mount
    assert seen_by_container(container) == dump(new)
    assert result["health"]["ok"] and "pool ergo1" in result["health"]["detail"]
    json.dumps(result)


@pytest.mark.slow
def test_update_rolls_back_when_the_pool_does_not_come_back(pool_host, sim):
    config, link, real, container = pool_host
    fault(sim, "pool_api_down")
    ctx = ActionContext(host="pool-test", config=config)

    def progress(line: str) -> None:  # the pool recovers once the old file is back
        if "restored the previous" in line:
            clear_faults(sim)

    ctx.progress = progress
    new = copy.deepcopy(BASE)
    new["pools"][0]["ports"]["4074"]["difficulty"] = 0.02
    with pytest.raises(ActionFailed) as info:
        run_update_miningcore_config(ctx, params(new, rollback_after=10))
    message = info.value.message
    assert message.startswith("Miningcore was not healthy within 10 s with the new config.json (miningcore did not "
                              "come back healthy within 10 s: Miningcore API at ")
    assert message.endswith("rolled back to the previous file and Miningcore is healthy again")
    details = info.value.details
    assert details["rolled_back"] is True and "service_down" not in details
    assert '"difficulty": 0.02' in details["diff"]
    assert real.read_text() == dump(BASE)
    assert Path(details["backup"]).read_text() == dump(BASE)
    assert seen_by_container(container) == dump(BASE)
    assert stat.S_IMODE(real.stat().st_mode) == 0o640 and real.stat().st_uid == 1000
    assert any("rolling back" in line for line in ctx.lines)
    assert requests.get(config.pool.miningcore.api_url + "/api/pools", timeout=5).status_code == 200


@pytest.mark.slow
def test_rollback_that_does_not_help_is_service_down(pool_host, sim):
    config, link, real, container = pool_host
    fault(sim, "pool_api_down")
    new = copy.deepcopy(BASE)
    new["pools"][0]["ports"]["4074"]["difficulty"] = 0.02
    with pytest.raises(ActionFailed) as info:
        run_update_miningcore_config(ActionContext(host="pool-test", config=config), params(new, rollback_after=10))
    assert "rolled back to the previous file, but Miningcore is still not healthy: " in info.value.message
    assert info.value.details["rolled_back"] is True and info.value.details["service_down"] is True
    assert real.read_text() == dump(BASE)

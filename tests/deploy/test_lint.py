"""The playbooks and roles pass ansible-lint's production profile and Ansible's syntax check with
both inventories; the example production vault opens with its documented demo password."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.deploy.conftest import ROOT, VENV_BIN

pytestmark = pytest.mark.slow

DEMO_VAULT_PASSWORD = "poolwarden-demo"  # documented in docs/deployment.md; the example holds no real secret


def ansible(tool: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "PATH": f"{VENV_BIN}:{os.environ['PATH']}", **kwargs.pop("env", {})}
    return subprocess.run([str(VENV_BIN / tool), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, **kwargs)


def test_ansible_lint_production_profile_is_clean():
    if not (VENV_BIN / "ansible-lint").exists():
        pytest.fail("ansible-lint is not installed: run devtools/bootstrap.sh test")
    result = ansible("ansible-lint", "--profile", "production", "--nocolor", "playbooks/", "roles/")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


@pytest.mark.parametrize("playbook", ["site.yml", "panel.yml", "agent.yml"])
def test_playbooks_pass_the_syntax_check(playbook, tmp_path):
    password = tmp_path / "vault-pass"
    password.write_text(DEMO_VAULT_PASSWORD + "\n")
    for inventory in ("inventory/vagrant", "inventory/production"):
        result = ansible("ansible-playbook", "--syntax-check", "-i", inventory,
                         "--vault-password-file", str(password), f"playbooks/{playbook}")
        assert result.returncode == 0, (inventory, result.stdout[-2000:], result.stderr[-2000:])


def test_production_example_vault_opens_with_the_demo_password(tmp_path):
    password = tmp_path / "vault-pass"
    password.write_text(DEMO_VAULT_PASSWORD + "\n")
    result = ansible("ansible-inventory", "-i", "inventory/production", "--vault-password-file", str(password),
                     "--host", "panel")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "vault_poolwarden_panel_secret_key" in result.stdout
    vault = (ROOT / "inventory/production/group_vars/all/vault.yml").read_text()
    assert vault.startswith("$ANSIBLE_VAULT;"), "the example vault must stay encrypted"


@pytest.mark.parametrize("inventory", ["vagrant", "production"])
def test_inventory_agent_acl_matches_the_contract(inventory):
    import yaml

    from agent.contract import agent_redis_acl_rules

    data = yaml.safe_load((ROOT / "inventory" / inventory / "group_vars/pool_hosts/vars.yml").read_text())
    rules = [r.replace("{{ inventory_hostname }}", "pool-1") for r in data["poolwarden_agent_redis_acl_user"]["rules"]]
    assert rules == agent_redis_acl_rules("pool-1")

"""Restart, start and stop one of the pool's services: ``miningcore``, ``ergo_node``, ``nginx``,
``postgresql``, as ``pool.json``'s ``services`` section says — a Docker container (through the
Engine API) or a systemd unit (``systemctl <verb> <unit>``, an argument list; the unit name was
validated when the configuration was loaded).

After a restart or start the action waits for the service's health probe (``health.probe_service``)
until a per-service deadline; a service that does not come back raises ``ActionFailed`` with
``service_down`` in its details, from which the panel raises a critical alert. A stop is checked:
the container must no longer run, the unit must no longer be active.
"""

from __future__ import annotations

import time
from typing import Any

from agent.actions import ActionContext, ActionFailed
from agent.actions.health import (
    HEALTH_DEADLINE_SECONDS,
    container_state,
    docker_api,
    docker_error,
    service_state,
    systemctl,
    systemctl_message,
    unit_state,
    wait_healthy,
)
from agent.config import ServiceConfig

# Seconds a stopping container gets after SIGTERM before Docker kills it: Miningcore flushes its
# share buffer, PostgreSQL checkpoints, the Ergo node closes its databases.
STOP_GRACE_SECONDS = {"miningcore": 30, "ergo_node": 120, "postgresql": 60, "nginx": 10}
STOP_VERIFY_SECONDS = 30.0


def configured_service(ctx: ActionContext, name: str) -> ServiceConfig:
    service = ctx.config.pool.services.get(name)
    if service is None:
        raise ActionFailed(
            f"{name} is not configured: add services.{name} to pool.json with either \"container\" (Docker) or "
            f"\"systemdUnit\", so poolwarden knows how to control it", {"missing_config": f"services.{name}"})
    return service


def _describe(service: ServiceConfig) -> str:
    return f"{'container' if service.kind == 'docker' else 'unit'} {service.target}"


def _base(service: ServiceConfig, verb: str) -> dict[str, Any]:
    return {"service": service.name, "kind": service.kind, "target": service.target, "action": verb}


def _docker_call(ctx: ActionContext, service: ServiceConfig, verb: str) -> dict[str, Any]:
    """Run one Engine call (restart/start/stop) and return the container's state before and after."""
    config = ctx.config
    grace = STOP_GRACE_SECONDS.get(service.name, 10)
    try:
        api = docker_api(config, extra_timeout=grace)
    except ActionFailed as exc:
        raise ActionFailed(f"cannot {verb} {service.name}: {exc.message}", _base(service, verb)) from None
    try:
        before = container_state(api, config, service.target)
        if not before.data:  # the container could not be inspected: missing, Engine down
            raise ActionFailed(f"cannot {verb} {service.name}: {before.detail}", _base(service, verb))
        was_running = before.data.get("status") == "running"
        if verb == "start" and was_running:
            ctx.say(f"{_describe(service)} is already running")
        elif verb == "stop" and not was_running:
            ctx.say(f"{_describe(service)} is not running ({before.data.get('status')})")
        else:
            ctx.say(f"{verb} {_describe(service)} (was {before.data.get('status')}"
                    + (f"; up to {grace} s to stop before it is killed)" if verb != "start" else ")"))
            try:
                if verb == "restart":
                    api.restart(service.target, timeout=grace)
                elif verb == "start":
                    api.start(service.target)
                else:
                    api.stop(service.target, timeout=grace)
            except Exception as exc:  # docker.errors.APIError, connection errors
                after = container_state(api, config, service.target)
                raise ActionFailed(f"docker {verb} of {service.target} failed: {docker_error(exc, config)}",
                                   {**_base(service, verb), "state": after.detail,
                                    "service_down": verb != "stop" and not after.ok}) from None
        after = container_state(api, config, service.target)
        return {"was": before.data, "now": after.data, "state": after.detail, "changed": after.data.get(
            "started_at") != before.data.get("started_at") or after.data.get("status") != before.data.get("status")}
    finally:
        api.close()


def _systemd_call(ctx: ActionContext, service: ServiceConfig, verb: str) -> dict[str, Any]:
    ctx.say(f"systemctl {verb} {service.target}")
    result = systemctl(verb, service.target)
    if result.returncode != 0:
        after = unit_state(service.target)
        raise ActionFailed(f"systemctl {verb} {service.target} failed: {systemctl_message(result)}",
                           {**_base(service, verb), "exit_status": result.returncode, "state": after.detail,
                            "service_down": verb != "stop" and not after.ok})
    return {"state": unit_state(service.target).detail}


def _control(ctx: ActionContext, service: ServiceConfig, verb: str) -> dict[str, Any]:
    if service.kind == "docker":
        return _docker_call(ctx, service, verb)
    return _systemd_call(ctx, service, verb)


def restart_service(ctx: ActionContext, name: str, deadline_seconds: float | None = None, *,
                    expect_pools: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Restart, then wait for health; ``ActionFailed`` with ``service_down`` if it does not come back."""
    return _bring_up(ctx, name, "restart", deadline_seconds, expect_pools)


def start_service(ctx: ActionContext, name: str, deadline_seconds: float | None = None) -> dict[str, Any]:
    return _bring_up(ctx, name, "start", deadline_seconds, None)


def _bring_up(ctx: ActionContext, name: str, verb: str, deadline_seconds: float | None,
              expect_pools: tuple[str, ...] | None) -> dict[str, Any]:
    service = configured_service(ctx, name)
    deadline = HEALTH_DEADLINE_SECONDS.get(name, 120) if deadline_seconds is None else deadline_seconds
    started = time.monotonic()
    control = _control(ctx, service, verb)
    ctx.say(f"waiting up to {deadline:g} s for {name} to be healthy")
    health = wait_healthy(ctx, name, deadline, expect_pools=expect_pools,
                          details={**_base(service, verb), "control": control})
    seconds = round(time.monotonic() - started, 1)
    done = "restarted" if verb == "restart" else "started"
    if verb == "start" and control.get("was", {}).get("status") == "running":
        done = "was already running"
    return {"summary": f"{name} ({_describe(service)}) {done} and healthy after {seconds:g} s",
            **_base(service, verb), "seconds": seconds, "control": control, "health": health}


def _stopped(ctx: ActionContext, service: ServiceConfig) -> tuple[bool | None, str]:
    """True when it no longer runs, False while it does, None when that cannot be told."""
    state = service_state(ctx.config, service)
    if service.kind == "docker":
        status = state.data.get("status")
        if status is None:
            return (True if "does not exist" in state.detail else None), state.detail
        return status not in ("running", "restarting", "paused"), state.detail
    unit = state.data.get("state")
    if unit is None:
        return None, state.detail
    return unit in ("inactive", "failed"), state.detail


def stop_service(ctx: ActionContext, name: str) -> dict[str, Any]:
    """Stop, then check that it no longer runs."""
    service = configured_service(ctx, name)
    started = time.monotonic()
    control = _control(ctx, service, "stop")
    deadline = time.monotonic() + STOP_VERIFY_SECONDS
    while True:
        stopped, detail = _stopped(ctx, service)
        if stopped or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if not stopped:
        what = "still runs" if stopped is False else "cannot be checked"
        raise ActionFailed(f"{name} ({_describe(service)}) {what} after stop: {detail}",
                           {**_base(service, "stop"), "control": control, "state": detail})
    seconds = round(time.monotonic() - started, 1)
    ctx.say(f"{name} is stopped: {detail}")
    return {"summary": f"{name} ({_describe(service)}) stopped after {seconds:g} s: {detail}",
            **_base(service, "stop"), "seconds": seconds, "control": control, "state": detail}


def run_restart(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return restart_service(ctx, params["service"])


def run_start(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return start_service(ctx, params["service"])


def run_stop(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return stop_service(ctx, params["service"])

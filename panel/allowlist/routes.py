"""``/admin/allowlist``: admins edit the IP allowlist (step-up, audited, never locking themselves out)."""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, url_for

from panel import audit
from panel.allowlist.forms import AllowlistForm
from panel.allowlist.policy import in_networks, parse_address
from panel.allowlist.store import load_entries, parse_entries, replace_entries
from panel.auth.principal import role_required
from panel.auth.stepup import step_up_required
from panel.db import get_db

bp = Blueprint("allowlist", __name__, url_prefix="/admin/allowlist")


def lockout_problem(entries, client_ip: str | None) -> str | None:
    """Why saving ``entries`` would cut off the admin saving them, or None."""
    if not entries:
        return None
    address = parse_address(client_ip)
    if address is not None and in_networks(address, [e.network for e in entries]):
        return None
    return (f"Not saved: your own address, {client_ip or 'unknown'}, is not in this list, so saving it would "
            f"lock you out. Add {client_ip}/{32 if address is None or address.version == 4 else 128} or a network "
            "containing it. If the panel is behind a reverse proxy and shows the proxy's address here, list the "
            "proxy in POOLWARDEN_TRUSTED_PROXIES so that the panel sees your real address.")


def _render(form, problems=(), status=200):
    return render_template("allowlist/index.html", form=form, problems=problems, entries=load_entries(get_db()),
                           client_ip=g.get("client_ip")), status


@bp.get("")
@role_required("admin")
def index():
    form = AllowlistForm()
    form.entries.data = "\n".join(e.line() for e in load_entries(get_db()))
    return _render(form)


@bp.post("")
@role_required("admin")
@step_up_required
def save():
    form = AllowlistForm()
    if not form.validate_on_submit():
        return _render(form, status=400)
    entries, problems = parse_entries(form.entries.data or "")
    if not problems:
        problem = lockout_problem(entries, g.get("client_ip"))
        problems = [problem] if problem else []
    if problems:
        return _render(form, problems, status=400)
    conn = get_db()
    before = [e.line() for e in load_entries(conn)]
    replace_entries(conn, entries, by=g.principal.name)
    after = [e.line() for e in load_entries(conn)]
    if before != after:
        audit.record_event("allowlist.update", "allowlist", None, before={"entries": before}, after={"entries": after})
    flash("Allowlist saved." if entries else "Allowlist saved empty: every address may reach the panel.", "ok")
    return redirect(url_for("allowlist.index"))

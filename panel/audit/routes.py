"""The audit page (filters, paging, chain state, "verify now") and its CSV export. Admins only."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime

from flask import Blueprint, Response, current_app, redirect, render_template, request, stream_with_context, url_for

from panel.audit.cli import record_verification
from panel.audit.forms import AuditFilterForm, VerifyForm
from panel.audit.queries import COLUMNS, chain_head, export_rows, latest_verification, page_of
from panel.auth.principal import role_required
from panel.db import connect, get_db

bp = Blueprint("audit", __name__)

# A cell a spreadsheet would run as a formula ("=HYPERLINK(...)" typed as a user name at the
# login form) is prefixed with a quote, as OWASP recommends for CSV exports.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _filter_form() -> AuditFilterForm:
    return AuditFilterForm(formdata=request.args)


@bp.get("/audit")
@role_required("admin")
def index():
    form = _filter_form()
    valid = form.validate()
    filters = form.filters() if valid else {}
    page = (form.page.data or 1) if valid else 1
    conn = get_db()
    rows, has_next = page_of(conn, filters, page)
    args = {k: v for k, v in request.args.items() if k != "page" and v}
    return render_template(
        "audit/index.html", form=form, rows=rows, page=page, has_next=has_next, args=args,
        verification=latest_verification(conn), head=chain_head(conn), verify_form=VerifyForm(),
        as_json=_json_cell,
    )


@bp.post("/audit/verify")
@role_required("admin")
def verify_now():
    from panel.audit.chain import verify

    form = VerifyForm()
    if form.validate_on_submit():
        conn = get_db()
        record_verification(conn, verify(conn))
    return redirect(url_for("audit.index"))


@bp.get("/audit.csv")
@role_required("admin")
def export_csv():
    form = _filter_form()
    if not form.validate():
        errors = "; ".join(f"{form[name].label.text}: {' '.join(msgs)}" for name, msgs in form.errors.items())
        return Response(f"invalid filter: {errors}\n", status=400, mimetype="text/plain")
    filters = form.filters()
    dsn = current_app.config["DATABASE_URL"]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Response(
        stream_with_context(_csv_lines(dsn, filters)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="poolwarden-audit-{stamp}.csv"',
                 "Cache-Control": "no-store"},
    )


def _csv_lines(dsn: str, filters: dict) -> Iterator[str]:
    """The export, streamed; it has its own connection because the request's closes before the body is sent."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(COLUMNS)
    yield flush()
    with connect(dsn) as conn:
        for row in export_rows(conn, filters):
            writer.writerow([_csv_cell(name, row[name]) for name in COLUMNS])
            yield flush()


def _csv_cell(name: str, value) -> str:
    if value is None:
        return ""
    if name == "ts":
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if name in ("before", "after", "details"):
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    else:
        text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _json_cell(value) -> str:
    if value in (None, {}):
        return ""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)

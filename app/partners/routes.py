"""Partner API routes (JSON; RFC 9457 problems)."""

from __future__ import annotations

from flask import Blueprint, g, jsonify

from app.extensions import csrf
from app.partners.auth import client_token_required
from app.partners.mapping import resolve_subject
from app.partners.problems import problem

bp = Blueprint("partners", __name__, url_prefix="/api")
csrf.exempt(bp)  # bearer-token API, no cookies


@bp.get("/subjects/<sub>")
@client_token_required("partner:lookup")
def subject_status(sub: str):
    """What became of a subject this client holds: active, merged into another, or closed."""
    result = resolve_subject(g.client, sub)
    if result is None:
        return problem(404, "Unknown subject", "this client's sector has no such subject")
    return jsonify(result)

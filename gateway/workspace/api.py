"""The agent API's write side: POST /api/v1/incidents/{tracking}/{action} (CONTRACT "Agent API").

Bearer tokens or the session cookie; a cookie-authenticated call must also carry the session's
CSRF token in `X-CSRF-Token` and come from this origin (403 otherwise). Errors follow the JSON
error format: 400 bad field, 401, 403, 404 outside the caller's access, 409 disallowed transition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.core.auth import User
from gateway.core.errors import Forbidden, NotFound
from gateway.core.services import gw_of
from gateway.store.tx import Tx
from gateway.web.api import by_bearer_token, can_see, current_user
from gateway.web.http import read_json
from gateway.web.views import incident_json
from gateway.workspace.actions import ACTIONS, ActionContext, Outcome, perform
from gateway.workspace.sessions import check_csrf
from gateway.workspace.web import same_origin

if TYPE_CHECKING:
    from gateway.core.services import Gateway

NO_BODY = ("claim", "close", "reopen")


async def acting_user(request: web.Request) -> User:
    """The caller, with CSRF and Origin checks when it is authenticated by the cookie."""
    user = await current_user(request)
    # Only a valid Bearer token skips the checks: any other Authorization header (Basic, a
    # made-up scheme) leaves the cookie as the credential, and a cross-site form can send it.
    if not by_bearer_token(request):
        gw = gw_of(request)
        if not same_origin(request, gw.settings.public_url):
            raise Forbidden("cross-origin request refused")
        if not check_csrf(request, request.headers.get("X-CSRF-Token")):
            raise Forbidden("missing or wrong X-CSRF-Token for this session")
    return user


async def run_action(
    gw: Gateway, user: User, tracking: str, action: str, body: dict[str, Any]
) -> Outcome:
    """Commit one action and publish its notice (shared by the API and the page forms)."""
    ctx = ActionContext(intake=gw.intake.ctx, guards=gw.reply_guards, now=gw.clock())
    outcome = await gw.store.transact(lambda tx: perform(tx, user, tracking, action, body, ctx))
    gw.after_commit(outcome.notice)  # after COMMIT: live pages, and the outbox for replies
    return outcome


async def action(request: web.Request) -> web.Response:
    """POST /api/v1/incidents/{tracking}/{action}: one life-cycle action; returns the incident."""
    name = request.match_info["action"]
    if name not in ACTIONS:
        raise NotFound(f"no action {name!r}; actions: {', '.join(ACTIONS)}")
    user = await acting_user(request)
    gw = gw_of(request)
    body: dict[str, Any] = {}
    if name not in NO_BODY or await request.read():
        body = await read_json(request)
    outcome = await run_action(gw, user, request.match_info["tracking"], name, body)
    now = gw.clock()
    window = gw.settings.routing.at_risk_window

    def read(tx: Tx) -> dict[str, Any] | None:
        row = tx.incident(outcome.row["id"])
        if row is None or not can_see(user, row):
            return None  # escalated out of the caller's levels: it is no longer theirs to read
        return incident_json(tx, row, now, window)

    incident = await gw.store.read(read)
    if incident is None:
        return web.json_response(
            {"tracking": outcome.tracking, "level": outcome.row["level"], "visible": False}
        )
    return web.json_response(incident)


def setup(gw: Gateway) -> None:
    """Register the write routes."""
    gw.app.router.add_post("/api/v1/incidents/{tracking}/{action}", action)

"""The agent workspace: sessions, the live queue and incident pages, the life-cycle actions API.

`setup(gw)` registers its routes, its migration (login throttling) and the session-cookie
authenticator. It builds on the core (`gateway.web.api`, `gateway.core.incident`,
`gateway.core.replies`) and never changes the core's tables' meaning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.workspace import (
    api,
    canned,
    desk,
    forms,
    live,
    login,
    noc_pages,
    openapi,
    pages,
    prefs,
    quarantine,
    reports_page,
    sessions,
)
from gateway.workspace.web import STATIC

if TYPE_CHECKING:
    from gateway.core.services import Gateway


def setup(gw: Gateway) -> None:
    """Wire the workspace into a gateway."""
    gw.add_migrations("workspace", sessions.MIGRATIONS)
    gw.add_migrations("desk", desk.MIGRATIONS)  # agents' zones, unread marks, canned replies
    sessions.setup_pool(gw)
    gw.authenticators.append(sessions.authenticate)
    api.setup(gw)
    openapi.setup(gw.app)
    login.setup(gw.app)
    pages.setup(gw.app)
    canned.setup(gw.app)
    reports_page.setup(gw.app)  # the supervisor's month
    quarantine.setup(gw.app)  # supervisors: held items, release or discard
    prefs.setup(gw.app)
    forms.setup(gw.app)
    live.setup(gw.app)
    noc_pages.setup(gw.app)  # search results, event history, printable record, alarms
    gw.app.router.add_static("/static/agent/", STATIC, name="agent_static")

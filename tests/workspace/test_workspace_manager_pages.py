"""The supervisor's pages refuse an L1 agent with the same Spanish 403 page (the workspace's
layout, the reason in words), and open for a supervisor."""

from __future__ import annotations

import pytest

from tests.workspace.conftest import login, make_desk

PAGES = {
    "/agent/reportes": "Los informes del mes son solo para supervisores",
    "/agent/cuarentena": "Solo supervisores y administradores ven la cuarentena",
    "/agent/alarmas": "Las alarmas del NOC son para supervisores",
    "/agent/respuestas": "Solo supervisores y administradores editan respuestas",
}


@pytest.mark.sqlite_only
async def test_the_supervisor_pages_refuse_others_in_spanish(start_app, settings) -> None:
    client, gw = await start_app(settings, adapters={})
    await make_desk(gw, client)
    assert await login(client, "ana") == 303  # L1
    for path, reason in PAGES.items():
        resp = await client.get(path)
        page = await resp.text()
        assert resp.status == 403 and reason in page, path
        assert 'lang="es"' in page and "Cola</a>" in page  # the layout, with its navigation
    client.session.cookie_jar.clear()
    assert await login(client, "sofia") == 303  # supervisor
    for path in PAGES:
        assert (await client.get(path)).status == 200, path

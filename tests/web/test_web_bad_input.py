"""No client mistake is a 500: malformed bodies on every POST route the gateway serves get a 4xx
(or a provider's 403 for an unsigned webhook), and the server keeps answering."""

from __future__ import annotations

from gateway.workspace.actions import ACTIONS
from tests.conftest import whatsapp_incident

BAD_BODIES = [
    (b"", "application/json"),
    (b"{not json", "application/json"),
    (b"[1, 2, 3]", "application/json"),
    (b'{"text": 12, "name": [], "phone": {"x": 1}, "level": null}', "application/json"),
    (b"\xff\xfe\x00garbage", "application/octet-stream"),
    (b"a=%ZZ&b=" + b"x" * 3000, "application/x-www-form-urlencoded"),
]


async def test_malformed_bodies_never_give_a_500(start_app, full_settings, agent_token):
    client, gw = await start_app(full_settings)
    tracking = await whatsapp_incident(gw, "SMbad")
    auth = {"Authorization": f"Bearer {await agent_token(gw, 'jefa', 'supervisor')}"}
    paths = set()
    for resource in gw.app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        if path and any(route.method == "POST" for route in resource):
            path = path.replace("{tracking}", tracking)
            if "{action}" in path:
                paths.update(path.replace("{action}", a) for a in ACTIONS)
            else:
                paths.add(path)
    assert "/api/v1/click2call" in paths and "/webhooks/telegram" in paths
    assert any(p.endswith("/escalate") for p in paths)
    for path in sorted(paths):
        for body, content_type in BAD_BODIES:
            headers = {"Content-Type": content_type, **auth}
            resp = await client.post(path, data=body, headers=headers)
            assert resp.status < 500, (path, body[:20], resp.status, await resp.text())
    assert (await client.get("/healthz")).status == 200

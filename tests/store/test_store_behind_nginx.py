"""The production set-up of compose.yaml, run for real on loopback: deploy/nginx/gateway.conf
in front of two gateway processes on one PostgreSQL database. Webhooks and the chat socket go
through nginx to either core; when a core is killed, nginx sends the next requests (and a
Twilio retry) to the other, and nothing is lost."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.adapters.whatsapp.wa_kit import inbound_form, signature
from tests.instances import PUBLIC_URL, ROOT, Instance
from tests.pgcluster import _free_port
from tests.store.test_store_two_processes import TRACKING, WHATSAPP, query

CONF = ROOT / "deploy" / "nginx" / "gateway.conf"


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    assert found, "nginx is not installed: .ci/run installs Debian's nginx-light"
    return found


def test_compose_runs_two_cores_on_one_postgresql_behind_nginx() -> None:
    """compose.yaml says what the README promises (no Docker engine runs here)."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    cores = {name: s for name, s in services.items() if name.startswith("core-")}
    assert len(cores) == 2
    names = {s["environment"]["GATEWAY_INSTANCE"] for s in cores.values()}
    assert names == set(cores)  # each core names itself
    urls = {s["environment"]["GATEWAY_DB"] for s in cores.values()}
    assert len(urls) == 1 and urls.pop().startswith("postgresql://")
    smtp = sorted(p for s in cores.values() for p in s["ports"])
    assert [p.split(":")[1] for p in smtp] == ["2525", "2525"] and len({*smtp}) == 2
    assert all("healthcheck" in s for s in services.values() if "profiles" not in s)
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    upstreams = re.findall(r"server (core-[ab]):8080", CONF.read_text())
    assert sorted(upstreams) == sorted(cores)


def render(a: Instance, b: Instance, port: int, prefix: Path) -> Path:
    """deploy/nginx/gateway.conf with the cores and the listener on loopback ports."""
    server = CONF.read_text()
    server = server.replace("core-a:8080", f"127.0.0.1:{a.http_port}")
    server = server.replace("core-b:8080", f"127.0.0.1:{b.http_port}")
    server = server.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    user = "user root;" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""{user}
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{server}
}}
"""
    )
    return conf


def start_nginx(conf: Path, prefix: Path) -> subprocess.Popen[bytes]:
    """nginx in the foreground with `conf`; its errors in prefix/stderr.log."""
    with open(prefix / "stderr.log", "wb") as err:
        return subprocess.Popen(
            [nginx_binary(), "-c", str(conf), "-p", str(prefix)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


@pytest.fixture
async def proxy(tmp_path: Path) -> Any:
    """start(a, b) -> nginx's base URL, in front of cores a and b."""
    procs: list[subprocess.Popen[bytes]] = []

    async def start(a: Instance, b: Instance) -> str:
        port = _free_port()
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        conf = render(a, b, port, prefix)
        proc = start_nginx(conf, prefix)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(url + "/healthz") as resp:
                        if resp.status == 200:
                            return url
                except aiohttp.ClientError:
                    pass
                assert proc.poll() is None, (prefix / "stderr.log").read_text()
                await asyncio.sleep(0.1)
        raise AssertionError("nginx did not come up")

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.postgresql_only
async def test_nginx_spreads_webhooks_and_sockets_and_routes_around_a_dead_core(
    instances: Any,
    proxy: Any,
    cluster_db: str,
) -> None:
    a, b = await instances("core-a", "core-b")
    url = await proxy(a, b)
    async with aiohttp.ClientSession() as http:

        async def whatsapp(form: Any) -> tuple[int, str]:
            headers = {"X-Twilio-Signature": signature(WHATSAPP, form, url=PUBLIC_URL)}
            async with http.post(url + WHATSAPP, data=form, headers=headers) as resp:
                return resp.status, await resp.text()

        before = [await whatsapp(inbound_form(f"+5068844{i:04d}")) for i in range(6)]
        assert all(status == 200 and TRACKING.search(text) for status, text in before)
        ws = await http.ws_connect(url + "/chat/ws", headers={"Origin": PUBLIC_URL})
        await ws.send_json({"type": "hello"})
        assert (await ws.receive_json(timeout=5))["type"] == "welcome"
        await ws.close()
        a.kill()
        form = inbound_form("+50688449999", "¿Me escuchan?")
        after = [await whatsapp(inbound_form(f"+5068845{i:04d}")) for i in range(6)]
        retried = [await whatsapp(form), await whatsapp(form)]  # Twilio's retry: same answer
        assert all(status == 200 for status, _ in after + retried)
        assert retried[0][1] == retried[1][1]
    [(incidents, receipts)] = query(
        cluster_db,
        "SELECT (SELECT count(*) FROM incidents),"
        " (SELECT count(DISTINCT provider_id) FROM receipts)",
    )
    assert incidents == receipts == 13

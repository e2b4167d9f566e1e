"""Operations on the database: an SQLite gateway copied into PostgreSQL and verified
(`migrate --from`), a consistent backup taken while contacts keep arriving and restored into an
empty database (`backup`, `restore`), and concurrent starts that migrate once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import pytest

from config.loader import load_settings
from gateway import cli
from gateway.app import create_app, prepare_store
from gateway.core.auth import add_user, create_token
from gateway.core.model import AttachmentIn, Contact, Inbound
from gateway.core.services import GW
from gateway.core.tracking import parse_tracking
from gateway.store.postgres import PostgresStore
from tests.conftest import OPEN_TIME


def email(pid: str, sender: str, **kw: Any) -> Inbound:
    return Inbound(
        channel="email",
        provider_id=pid,
        contact=Contact(name="Cliente Ñandú", email=sender),
        text="Mi línea no funciona desde las 8 — «urgente»",
        received_at=OPEN_TIME,
        subject="Falla",
        message_ref=pid,
        **kw,
    )


def whatsapp(pid: str, phone: str) -> Inbound:
    return Inbound(
        channel="whatsapp",
        provider_id=pid,
        contact=Contact(phone=phone),
        text="Hola, no tengo servicio",
        received_at=OPEN_TIME,
        thread_by_contact=True,
        acknowledge=False,
    )


@contextlib.contextmanager
def quiet_cli() -> Any:
    """cli.main configures logging for a real process; keep the test's handlers."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


async def gateway_on(url: str, clock: Any) -> Any:
    settings = load_settings({"GATEWAY_DB": url, "GATEWAY_SMTP_PORT": "0"})
    gw = create_app(settings, clock=clock)[GW]
    await prepare_store(gw)
    return gw


async def count(gw: Any, table: str) -> int:
    row = await gw.store.read(lambda tx: tx.one(f"SELECT count(*) AS n FROM {table}"))
    return int(row["n"])


async def fill(gw: Any) -> str:
    """Incidents on two channels, a follow-up, an attachment, an agent and a token."""
    png = AttachmentIn("captura.png", "image/png", 6, data=b"\x89PNG\x00\xff")
    for i in range(12):
        await gw.intake.accept(email(f"<m{i}@x>", f"c{i}@example.com", attachments=(png,)))
        await gw.intake.accept(whatsapp(f"SM{i:032d}", f"+5068888{i:04d}"))
    await gw.intake.accept(whatsapp("SMfollow", "+50688880001"))
    now = gw.clock()

    def agent(tx: Any) -> str:
        add_user(tx, "marta", "supervisor", None, "una clave larga de verdad", now)
        return create_token(tx, "marta", now)

    return await gw.store.transact(agent)  # type: ignore[no-any-return]


@pytest.mark.postgresql_only
async def test_migrate_from_sqlite_copies_and_verifies_every_table(
    tmp_path: Path, pg_cluster: Any, clock: Any, capsys: Any, aiohttp_client: Any
) -> None:
    source_url = f"sqlite:///{tmp_path}/old.db"
    old = await gateway_on(source_url, clock)
    token = await fill(old)
    highest = await old.store.read(lambda tx: tx.one("SELECT max(tracking) AS t FROM incidents"))
    await old.store.close()
    target_url = pg_cluster.create_database()
    with quiet_cli():
        code = await asyncio.to_thread(
            cli.main, ["migrate", "--from", source_url], {"GATEWAY_DB": target_url}
        )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "MISMATCH" not in out and "copied and verified" in out
    for table in ("incidents", "messages", "attachments", "events", "receipts", "users"):
        line = next(row for row in out.splitlines() if row.startswith(f"{table} "))
        assert line.rstrip().endswith("ok") and int(line.split()[1]) > 0, line
    new = await gateway_on(target_url, clock)
    try:
        assert await count(new, "incidents") == 24
        receipt = await new.intake.accept(whatsapp("SMafter", "+50688889999"))
        assert parse_tracking(receipt.tracking) and receipt.tracking > highest["t"]
        again = await new.intake.accept(whatsapp("SMfollow", "+50688880001"))
        assert again.duplicate  # the receipts came along: the provider's retry is known
        photo = await new.store.read(lambda tx: tx.one("SELECT data FROM attachments LIMIT 1"))
        assert bytes(photo["data"]) == b"\x89PNG\x00\xff"
    finally:
        await new.store.close()
    # The agent's API token came along too: the copied gateway answers it over HTTP.
    settings = load_settings({"GATEWAY_DB": target_url, "GATEWAY_SMTP_PORT": "0"})
    client = await aiohttp_client(create_app(settings, clock=clock, adapters={}))
    resp = await client.get("/api/v1/queue?level=L1", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200 and len((await resp.json())["incidents"]) == 25
    await client.close()
    with quiet_cli():
        code = await asyncio.to_thread(
            cli.main, ["migrate", "--from", source_url], {"GATEWAY_DB": target_url}
        )
    assert code == 1 and "not empty" in capsys.readouterr().err


@pytest.mark.parametrize("load", [60])
async def test_a_backup_taken_under_load_restores_into_an_empty_database(
    tmp_path: Path, db_url: str, request: Any, clock: Any, load: int
) -> None:
    gw = await gateway_on(db_url, clock)
    await fill(gw)
    stop, loaded = asyncio.Event(), asyncio.Event()
    accepted: list[str] = []

    async def keep_arriving(writer: int) -> None:
        i = 0
        while not stop.is_set():
            pid = f"<load{writer}-{i}@x>"
            receipt = await gw.intake.accept(email(pid, f"load{writer}-{i}@example.com"))
            accepted.append(receipt.tracking)
            if len(accepted) >= load:
                loaded.set()
            i += 1
            await asyncio.sleep(0)

    writers = [asyncio.create_task(keep_arriving(w)) for w in range(3)]
    await asyncio.wait_for(loaded.wait(), timeout=30)
    before = await count(gw, "incidents")
    path = tmp_path / "backups" / "gateway.backup"
    with quiet_cli():
        code = await asyncio.to_thread(cli.main, ["backup", str(path)], {"GATEWAY_DB": db_url})
    after = await count(gw, "incidents")
    stop.set()
    await asyncio.gather(*writers)
    await gw.store.close()
    assert code == 0 and path.stat().st_size > 0
    if db_url.startswith("sqlite:"):
        empty = f"sqlite:///{tmp_path}/restored.db"
    else:
        empty = request.getfixturevalue("pg_cluster").create_database()
    with quiet_cli():
        code = await asyncio.to_thread(cli.main, ["restore", str(path)], {"GATEWAY_DB": empty})
    assert code == 0
    restored = await gateway_on(empty, clock)
    try:
        n = await count(restored, "incidents")
        assert before <= n <= after  # one instant's snapshot, taken while writes went on
        orphans = await restored.store.read(
            lambda tx: tx.one(
                "SELECT count(*) AS n FROM incidents i WHERE NOT EXISTS"
                " (SELECT 1 FROM receipts r WHERE r.incident_id = i.id)"
                " OR NOT EXISTS (SELECT 1 FROM messages m WHERE m.incident_id = i.id)"
            )
        )
        assert orphans["n"] == 0  # every incident came with its receipt and its message
        highest = await restored.store.read(
            lambda tx: tx.one("SELECT max(tracking) AS t FROM incidents")
        )
        fresh = await restored.intake.accept(email("<after-restore@x>", "nuevo@example.com"))
        assert fresh.created and fresh.tracking > highest["t"]
    finally:
        await restored.store.close()
    with quiet_cli():
        code = await asyncio.to_thread(cli.main, ["restore", str(path)], {"GATEWAY_DB": empty})
    assert code == 1  # never over existing data


@pytest.mark.postgresql_only
async def test_instances_starting_at_once_migrate_once(pg_cluster: Any) -> None:
    url = pg_cluster.create_database()
    settings = load_settings({"GATEWAY_DB": url, "GATEWAY_SMTP_PORT": "0"})
    plan = create_app(settings)[GW].migrations
    stores = [PostgresStore(url, instance=f"core-{i}") for i in range(4)]
    for store in stores:
        await store.open()
    try:
        await asyncio.gather(*(store.migrate(plan) for store in stores))
        rows = await stores[0].read(
            lambda tx: tx.all(
                "SELECT component, version, count(*) AS n FROM schema_migrations"
                " GROUP BY component, version"
            )
        )
    finally:
        for store in stores:
            await store.close()
    assert {r["component"] for r in rows} >= {"core", "email", "telegram", "workspace"}
    assert all(r["n"] == 1 for r in rows)

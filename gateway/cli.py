"""Command line: serve, migrate, check-config, user add, token create|list|revoke (CONTRACT
"Running it").

A configuration problem prints one line naming the setting and exits 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from config.loader import ConfigError, display_url, load_settings, masked
from config.settings import Settings
from gateway.core.errors import GatewayError, Rejected
from gateway.core.logs import configure
from gateway.core.timeutil import iso, utcnow
from gateway.store.tx import Tx

T = TypeVar("T")
log = logging.getLogger("gateway")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run HTTP, SMTP and the scheduler in one process")
    migrate = sub.add_parser("migrate", help="create or migrate the database schema, then exit")
    migrate.add_argument(
        "--from",
        dest="source",
        metavar="sqlite:///path.db",
        help="copy an SQLite gateway's data into the empty PostgreSQL database of GATEWAY_DB",
    )
    backup = sub.add_parser("backup", help="write a consistent copy of the database to PATH")
    backup.add_argument("path")
    restore = sub.add_parser("restore", help="restore a backup into the empty GATEWAY_DB")
    restore.add_argument("path")
    sub.add_parser("check-config", help="validate and print the effective configuration")
    sub.add_parser("replay", help="process again the inbound items shunted by a failure")
    user = sub.add_parser("user", help="manage agents").add_subparsers(dest="action", required=True)
    add = user.add_parser("add", help="create an agent")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["l1", "l2", "l3", "supervisor", "admin"])
    add.add_argument("--team")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="action", required=True)
    create = token.add_parser("create", help="print a new API token for a user")
    create.add_argument("name")
    token.add_parser("list", help="list API tokens (id, user, dates; never the token)")
    revoke = token.add_parser("revoke", help="revoke a token by id, or all tokens of a user")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, help="the token id `token list` shows")
    which.add_argument("--user", help="revoke every live token of this user")
    telegram = sub.add_parser("telegram", help="Telegram bot").add_subparsers(
        dest="action", required=True
    )
    telegram.add_parser("set-webhook", help="register GATEWAY_PUBLIC_URL/webhooks/telegram")
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    env = os.environ if env is None else env
    configure()
    try:
        settings = load_settings(env)
        args.event_loop = env.get("GATEWAY_EVENT_LOOP", "")
        loop_factory(args.event_loop)  # a wrong name is refused before anything starts
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        return _COMMANDS[args.command](settings, args)
    except GatewayError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from aiohttp import web

    from gateway.app import create_app

    app = create_app(settings)

    async def announce(_app: web.Application) -> None:
        print(
            f"CallMyWay gateway: HTTP on http://{settings.http_host}:{settings.http_port}"
            f" (public URL {settings.public_url}),"
            f" SMTP on {settings.smtp_host}:{settings.smtp_port},"
            f" database {display_url(settings.db_url)}\n"
            "Create the first agent:  python -m gateway user add NAME --role supervisor"
            " --password-stdin\n"
            "API token for it:        python -m gateway token create NAME",
            flush=True,
        )

    app.on_startup.append(announce)
    from gateway.core.gil import quick_gil_handoff
    from gateway.core.heap import freeze_startup_heap
    from gateway.web.listen import start_http

    async def run() -> None:
        # run_app's own site has no per-address cap or header deadline: the guarded site does.
        runner, _site = await start_http(app, settings)
        freeze_startup_heap()  # started: what is alive now lives as long as the process
        quick_gil_handoff()  # the event loop waits for a parsing thread 0.5 ms, not 5
        try:
            await asyncio.Event().wait()  # until SIGTERM/SIGINT (GracefulExit) cancels it
        finally:
            await runner.cleanup()

    with contextlib.suppress(web.GracefulExit, KeyboardInterrupt):
        run_on_loop(run(), args.event_loop)
    return 0


def loop_factory(name: str = "") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop `serve` runs on: uvloop (libuv) where installed, which serves the same
    work with less CPU per request (bench/webhook.py --loop); "asyncio" (GATEWAY_EVENT_LOOP)
    chooses the standard library's loop. None means asyncio's default."""
    if name not in ("", "uvloop", "asyncio"):
        raise ConfigError(f"GATEWAY_EVENT_LOOP must be 'uvloop' or 'asyncio', not {name!r}")
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise ConfigError("GATEWAY_EVENT_LOOP=uvloop but uvloop is not installed") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_on_loop(main: Coroutine[Any, Any, T], loop: str = "") -> T:
    """asyncio.run(main) on the loop `loop_factory(loop)` names."""
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(main)


async def _with_store(settings: Settings, fn: Callable[[Tx], T]) -> T:
    """Open the database with every migration (core and adapters), run `fn`, close."""
    from gateway.app import create_app
    from gateway.core.services import GW

    gw = create_app(settings)[GW]  # built only to collect the adapters' migrations
    await gw.store.open()
    try:
        await gw.store.migrate(gw.migrations)
        return await gw.store.transact(fn)
    finally:
        await gw.store.close()


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    if args.source:
        return _migrate_from(settings, args.source)
    asyncio.run(_with_store(settings, lambda tx: None))
    print(f"database {display_url(settings.db_url)} is up to date")
    return 0


def _migrate_from(settings: Settings, source: str) -> int:
    """Copy an SQLite database into the empty PostgreSQL one and verify every table."""
    from gateway.store.postgres import is_postgres_url
    from gateway.store.sqlite import sqlite_path
    from gateway.store.transfer import TransferError, copy_sqlite_to_postgres

    if not is_postgres_url(settings.db_url):
        print(
            "error: --from copies into PostgreSQL: set GATEWAY_DB=postgresql://...", file=sys.stderr
        )
        return 2
    if not source.startswith("sqlite:///") or not Path(sqlite_path(source)).is_file():
        print(f"error: --from {source!r} is not an existing sqlite:///path.db", file=sys.stderr)
        return 2
    # Both databases at the latest schema: the same columns on each side.
    asyncio.run(_with_store(replace(settings, db_url=source), lambda tx: None))
    asyncio.run(_with_store(settings, lambda tx: None))
    try:
        checks = copy_sqlite_to_postgres(sqlite_path(source), settings.db_url)
    except TransferError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{'table':<28} {'sqlite rows':>12} {'postgresql rows':>16}  checksum")
    for check in checks:
        state = "ok" if check.ok else f"MISMATCH ({check.source_sum} != {check.target_sum})"
        print(
            f"{check.table:<28} {check.source_rows:>12} {check.target_rows:>16}"
            f"  {check.target_sum} {state}"
        )
    failed = [c.table for c in checks if not c.ok]
    if failed:
        print(f"error: {len(failed)} table(s) differ: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"copied and verified {len(checks)} tables into {display_url(settings.db_url)}")
    return 0


def _backup(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.store.backup import BackupError, backup

    try:
        size = backup(settings.db_url, Path(args.path))
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"backup of {display_url(settings.db_url)} written to {args.path} ({size} bytes)")
    return 0


def _restore(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.store.backup import BackupError, restore

    try:
        restore(settings.db_url, Path(args.path))
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    asyncio.run(_with_store(settings, lambda tx: None))  # a backup of an older version
    print(f"restored {args.path} into {display_url(settings.db_url)}")
    return 0


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.app import create_app, prepare_store
    from gateway.core.services import GW

    async def run() -> tuple[int, int]:
        gw = create_app(settings)[GW]
        await prepare_store(gw)
        try:
            return await gw.intake.replay_shunted()
        finally:
            await gw.store.close()

    done, failed = asyncio.run(run())
    print(f"replayed {done} shunted item(s); {failed} still failing")
    return 0 if failed == 0 else 1


def _check_config(settings: Settings, args: argparse.Namespace) -> int:
    print(json.dumps(masked(settings), indent=2, ensure_ascii=False, default=str))
    print("configuration OK", file=sys.stderr)
    return 0


def _user(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.core.auth import add_user

    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            print("error: empty password on stdin", file=sys.stderr)
            return 1
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ") or None
    user = asyncio.run(
        _with_store(
            settings, lambda tx: add_user(tx, args.name, args.role, args.team, password, utcnow())
        )
    )
    print(f"user {user.name} ({user.role}{', team ' + user.team if user.team else ''}) created")
    return 0


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.core.auth import create_token, list_tokens, revoke_tokens, token_expiry

    lifetime = settings.agents.token_lifetime
    if args.action == "create":
        print(
            asyncio.run(
                _with_store(settings, lambda tx: create_token(tx, args.name, utcnow(), lifetime))
            )
        )
        return 0
    if args.action == "list":
        now = utcnow()
        print("id\tuser\tcreated\texpires\tstate")
        for row in asyncio.run(_with_store(settings, list_tokens)):
            expires = token_expiry(row, lifetime)
            state = "revoked" if row["revoked_at"] else ("expired" if expires <= now else "active")
            print(f"{row['id']}\t{row['name']}\t{row['created_at']}\t{iso(expires)}\t{state}")
        return 0

    def revoke(tx: Tx) -> int:
        if args.user is None:
            return revoke_tokens(tx, utcnow(), token_id=args.id)
        row = tx.one("SELECT id FROM users WHERE name = ?", (args.user,))
        if row is None:
            raise Rejected(f"no user named {args.user!r}", field="user")
        return revoke_tokens(tx, utcnow(), user_id=row["id"])

    count = asyncio.run(_with_store(settings, revoke))
    if count == 0:
        print("error: no such live token", file=sys.stderr)
        return 1
    print(f"revoked {count} token(s)")
    return 0


def _telegram(settings: Settings, args: argparse.Namespace) -> int:
    from adapters import ADAPTERS

    command: Any = getattr(ADAPTERS.get("telegram"), "set_webhook_command", None)
    if command is None:
        print("error: the Telegram adapter is not installed", file=sys.stderr)
        return 1
    return int(asyncio.run(command(settings)))


_COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "serve": _serve,
    "migrate": _migrate,
    "backup": _backup,
    "restore": _restore,
    "check-config": _check_config,
    "replay": _replay,
    "user": _user,
    "token": _token,
    "telegram": _telegram,
}

"""The web chat channel: GET /chat/ws (CONTRACT "WebSocket chat"); `setup` wires it all.

Frames in → one `gw.intake.accept()` each; `ack`/`ticket` frames only after the commit, never
before. A visitor is only its signed token (never an email or phone). Agent replies leave
through `delivery`; pages and widget through `page`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMsgType, web

from adapters.webchat import confirm, presence
from adapters.webchat.confirm import confirmation_job
from adapters.webchat.delivery import Delivery, email_guard
from adapters.webchat.frames import Details, FrameError, Hello, Message, Start, parse_frame
from adapters.webchat.history import (
    line_status,
    message_frame,
    replay_rows,
    ticket_frame,
    welcome_lines,
)
from adapters.webchat.hub import Bucket, Hub
from adapters.webchat.page import ChatPages, allowed_origins, normalize_origin, ui_texts
from adapters.webchat.token import issue_token, new_visitor_id, verify_token
from adapters.webchat.upload import make_upload
from gateway.core.errors import Rejected, TemporaryFailure
from gateway.core.model import Contact, Inbound, Receipt
from gateway.core.timeutil import iso
from gateway.store.tx import Row
from gateway.web.http import client_address, error_response

if TYPE_CHECKING:
    from gateway.core.services import Gateway

log = logging.getLogger(__name__)
HUB = web.AppKey("webchat_hub", Hub)


class Session:
    """One socket's state; kept tiny because a gateway holds thousands of them."""

    __slots__ = (
        "bucket",
        "claims",
        "contact",
        "country",
        "lang",
        "lang_explicit",
        "tracking",
        "visitor",
    )

    def __init__(self, bucket: Bucket):
        self.bucket = bucket
        self.visitor: str | None = None
        self.lang = "es"
        self.lang_explicit: str | None = None
        self.tracking: str | None = None
        self.country: str | None = None
        self.contact: Contact | None = None
        self.claims: dict[str, str] = {}  # what the pre-chat form said: unverified


def _dump(frame: dict[str, Any]) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


class WebChat:
    """The chat socket handler of one gateway process."""

    def __init__(self, gw: Gateway):
        self.gw = gw
        self.cfg = gw.settings.webchat
        self.hub = Hub(self.cfg.messages_per_minute)
        self.origins = allowed_origins(gw)
        self.countries = frozenset(gw.settings.routing.lines)
        self.instance = gw.settings.instance

    # -- handshake and frame loop ---------------------------------------------------------
    async def socket(self, request: web.Request) -> web.StreamResponse:
        """GET /chat/ws: check Origin (checklist W1) and the per-IP cap, then run the session."""
        origin = normalize_origin(request.headers.get("Origin", ""))
        if origin is None or origin not in self.origins:
            # Cross-site WebSocket hijacking: browsers always send Origin on WS handshakes.
            return error_response(403, "this origin may not open the chat socket")
        ws = web.WebSocketResponse(
            heartbeat=self.cfg.heartbeat.total_seconds(), max_msg_size=self.cfg.max_frame_bytes
        )
        if not ws.can_prepare(request).ok:
            return error_response(400, "GET /chat/ws expects a WebSocket upgrade")
        ip = client_address(request, self.gw.settings.trusted_proxies)
        if not self.hub.admit_ip(ip, self.cfg.max_sockets_per_ip):
            return error_response(429, "too many chat sockets from this address")
        session = Session(Bucket(self.cfg.messages_per_minute, time.monotonic()))
        try:
            await ws.prepare(request)
            async for msg in ws:  # ends on close; a 1009 (too big) closes from inside aiohttp
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                if not session.bucket.take(time.monotonic()):
                    await self._limit(ws, session)
                    break
                if msg.type == WSMsgType.BINARY:
                    await self._error(ws, session, "bad_frame")
                    continue
                await self._frame(ws, session, msg.data)
        except ConnectionError as exc:  # the peer went away while we wrote to it
            log.info("chat socket closed while writing: %s", exc)
        finally:
            if session.visitor:
                self.hub.leave(session.visitor, ws)
                await self._leave(session.visitor)
            self.hub.release_ip(ip)
        return ws

    async def _join(self, ws: web.WebSocketResponse, session: Session, visitor: str) -> bool:
        """Record the socket in the shared presence (the visitor's cap holds across
        instances); False when refused, with the socket told and closed."""
        cap, now, instance = self.cfg.max_sockets_per_visitor, self.gw.clock(), self.instance
        try:
            if self.gw.store.shared:
                joined = await self.gw.store.transact(
                    lambda tx: presence.join(tx, instance, visitor, now, cap),
                    keys=(presence.visitor_key(visitor),),
                )
            else:  # this process holds every socket there is: its hub is the count
                joined = self.hub.sockets(visitor) < cap
        except TemporaryFailure:
            await self._error(ws, session, "unavailable")
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER)
            return False
        if not joined:
            await self._error(ws, session, "too_many_sockets")
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"too many sockets")
        return joined

    async def _leave(self, visitor: str) -> None:
        if not self.gw.store.shared:
            return  # nothing recorded (`_join`)
        instance = self.instance
        try:
            await self.gw.store.transact(lambda tx: presence.leave(tx, instance, visitor))
        except Exception as exc:  # the heartbeat's reconciliation corrects the count
            log.warning("chat presence not updated on close: %s", exc)

    async def fan_out(
        self, visitor: str, data: str, skip: web.WebSocketResponse | None = None
    ) -> int:
        """Send a frame to the visitor's sockets here and, through the store, on other
        instances; returns how many sockets here got it (-1: relayed to another instance)."""
        sent = await self.hub.send(visitor, data, skip=skip)
        if not self.gw.store.shared:
            return sent  # no other instance to hold a socket
        now, instance = self.gw.clock(), self.instance
        if await self.gw.store.read(lambda tx: presence.held_elsewhere(tx, instance, visitor, now)):
            await self.gw.store.broadcast({"type": "chat", "visitor": visitor, "data": data})
            return sent or -1
        return sent

    async def _relay_in(self) -> None:
        """Chat frames other instances broadcast for visitors whose sockets are here."""
        async with self.gw.bus.subscribe() as queue:
            while True:
                notice = await queue.get()
                if notice.get("type") == "chat" and isinstance(notice.get("visitor"), str):
                    await self.hub.send(notice["visitor"], str(notice.get("data", "")))

    async def _heartbeat(self) -> None:
        """Keep this instance's presence rows fresh; once a minute, fix their counts."""
        beats = 0
        while True:
            await asyncio.sleep(presence.HEARTBEAT.total_seconds())
            beats += 1
            counts = {v: len(s) for v, s in self.hub.visitors.items()} if beats % 6 == 0 else None
            now, instance = self.gw.clock(), self.instance
            try:
                await self.gw.store.transact(
                    lambda tx, i=instance, n=now, c=counts: presence.refresh(tx, i, n, c)
                )
            except Exception as exc:
                log.warning("chat presence heartbeat failed: %s", exc)

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """At start forget this instance's old presence; run the heartbeat and the relay."""
        instance = self.instance
        tasks = [asyncio.create_task(self._relay_in(), name="webchat-relay")]
        if self.gw.store.shared:  # alone on its database, an instance's hub is the presence
            await self.gw.store.transact(lambda tx: presence.forget_instance(tx, instance))
            tasks.append(asyncio.create_task(self._heartbeat(), name="webchat-presence"))
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _limit(self, ws: web.WebSocketResponse, session: Session) -> None:
        await self._error(ws, session, "rate_limited")
        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"rate limit")

    async def _error(
        self,
        ws: web.WebSocketResponse,
        session: Session,
        code: str,
        field: str | None = None,
        client_id: str | None = None,
    ) -> None:
        texts = ui_texts(self.gw, session.lang)
        message = texts.get(f"error_{code}", code)
        if field:
            message = f"{message}: {texts.get(field, field)}"
        frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if field:
            frame["field"] = field
        if client_id:
            frame["client_id"] = client_id
        await ws.send_str(_dump(frame))

    async def _frame(self, ws: web.WebSocketResponse, session: Session, raw: str) -> None:
        try:
            frame = parse_frame(raw, self.countries)
        except FrameError as exc:
            await self._error(ws, session, exc.code, exc.field, _client_id_of(raw))
            return
        if isinstance(frame, Hello):
            await self._hello(ws, session, frame)
            return
        if session.visitor is None:
            await self._error(ws, session, "hello_first", client_id=frame.client_id)
            return
        if not self.hub.visitor_allows(session.visitor):
            await self._limit(ws, session)
            return
        try:
            if isinstance(frame, Start):
                await self._start(ws, session, frame)
            elif isinstance(frame, Message):
                await self._message(ws, session, frame)
            elif isinstance(frame, Details):
                await self._details(ws, session, frame)
        except ConnectionError:
            raise
        except Exception:  # a bug on one frame must not take the socket (or others) down
            log.exception("chat frame failed (visitor %s…)", session.visitor[:6])
            await self._error(ws, session, "unavailable", client_id=frame.client_id)

    # -- hello: new or resumed visitor ----------------------------------------------------
    async def _hello(self, ws: web.WebSocketResponse, session: Session, hello: Hello) -> None:
        now = self.gw.clock()
        visitor = session.visitor or verify_token(self.gw.secret_key, hello.token, now)
        fresh = visitor is None
        visitor = visitor or new_visitor_id()
        if session.visitor is None:
            # Join before reading: a reply committed after the read is then delivered live.
            if not await self._join(ws, session, visitor):
                return
            self.hub.join(visitor, ws)
            session.visitor = visitor
        if hello.lang:
            session.lang = session.lang_explicit = hello.lang
        rows: list[Row] = []
        if not fresh:
            try:
                rows = await self.gw.store.read(lambda tx: replay_rows(tx, visitor))
            except TemporaryFailure:
                await self._error(ws, session, "unavailable")
                await ws.close(code=WSCloseCode.TRY_AGAIN_LATER)
                return
        latest = rows[-1] if rows else None
        if latest is not None and latest["status"] != "closed":
            session.tracking, session.country = latest["tracking"], latest["country"]
            session.lang = session.lang_explicit or latest["language"] or session.lang
        country = session.country or hello.country or self.gw.settings.routing.default_country
        status = line_status(self.gw, country, session.lang, now)
        welcome: dict[str, Any] = {
            "type": "welcome",
            **status,
            "token": issue_token(self.gw.secret_key, visitor, now),
            "resumed": not fresh,
            "country": country,
            "lines": welcome_lines(self.gw, session.lang, now),
        }
        if session.tracking:
            welcome["tracking"] = session.tracking
        if latest is not None:  # the conversation's state: "resuelto", "cerrado"...
            welcome["case"] = {"tracking": latest["tracking"], "status": latest["status"]}
        await ws.send_str(_dump(welcome))
        for row in rows:
            await ws.send_str(_dump(message_frame(row)))
        await ws.send_str(_dump({"type": "synced", "count": len(rows)}))

    # -- start and message: commit, then acknowledge --------------------------------------
    async def _accept(
        self,
        ws: web.WebSocketResponse,
        session: Session,
        msg: Inbound,
        client_id: str | None,
        email: str | None = None,
    ) -> tuple[Receipt, bool] | None:
        """The intake's receipt, or None when an error frame was sent instead. With a typed
        `email`, the confirmation mail is queued in the intake's own transaction (replies are
        mailed only to an address the visitor confirmed), so the answer waits for one COMMIT;
        the flag says whether the visitor had confirmed that address already."""
        ask = confirmation_job(self.gw, session.visitor, email) if email else None
        try:
            receipt, confirmed = await self.gw.intake.accept_with(msg, ask)
        except TemporaryFailure:
            # Nothing was committed: the client keeps the frame and resends the same client_id.
            await self._error(ws, session, "not_saved", client_id=client_id)
            return None
        except Rejected as exc:
            await self._error(ws, session, "invalid", exc.field, client_id)
            return None
        if ask is not None:
            self.gw.outbox.wake()
        return receipt, bool(confirmed)

    def _inbound(self, session: Session, client_id: str | None, raw: str, **kw: Any) -> Inbound:
        assert session.visitor is not None
        cid = client_id or f"server-{secrets.token_urlsafe(12)}"
        return Inbound(
            channel="webchat",
            provider_id=f"{session.visitor}:{cid}",
            received_at=self.gw.clock(),
            thread_by_contact=True,  # threading only by the signed visitor id (checklist W5)
            acknowledge=False,  # the ticket/ack frames are the acknowledgement
            language=session.lang_explicit,
            raw=raw.encode(),
            **kw,
        )

    async def _start(self, ws: web.WebSocketResponse, session: Session, start: Start) -> None:
        # Only the signed visitor token is proven; the form's name, email and phone are claims
        # (checklist W5: typing a customer's email gives no access to their conversations).
        # `begin` (type first) may come without a name: the timeline names a chat visitor.
        contact = Contact(visitor_id=session.visitor)
        typed = {"name": start.name or None, "email": start.email, "phone": start.phone}
        claims = {k: v for k, v in typed.items() if v}
        msg = self._inbound(
            session,
            start.client_id,
            json.dumps({"type": "start", "text": start.text}),
            contact=contact,
            claims=claims,
            text=start.text,
            chosen_country=start.country,
            severity=start.severity,
            author=start.name or ui_texts(self.gw, session.lang).get("visitor", "visitor"),
        )
        accepted = await self._accept(ws, session, msg, start.client_id, start.email)
        if accepted is None:
            return
        receipt, confirmed = accepted
        session.contact, session.claims, session.country = contact, claims, receipt.country
        await self._committed(ws, session, receipt, start.client_id, start.text, confirmed)

    async def _message(self, ws: web.WebSocketResponse, session: Session, frame: Message) -> None:
        if not session.tracking:
            await self._error(ws, session, "no_conversation", client_id=frame.client_id)
            return
        contact = session.contact or Contact(visitor_id=session.visitor)
        msg = self._inbound(
            session,
            frame.client_id,
            json.dumps({"type": "message", "text": frame.text}),
            contact=contact,
            claims=session.claims,
            text=frame.text,
            chosen_country=session.country,
            # The conversation's number: threads into it even when resolved (the core checks
            # that this visitor takes part in it); a closed one gets a follow-up incident.
            tracking_hints=(session.tracking,),
        )
        accepted = await self._accept(ws, session, msg, frame.client_id)
        if accepted is not None:
            await self._committed(ws, session, accepted[0], frame.client_id, frame.text)

    async def _details(self, ws: web.WebSocketResponse, session: Session, frame: Details) -> None:
        """Who the customer is, told after the first message: filled into the contact (never
        over what it already holds) and shown to agents as a message of the conversation."""
        if not session.tracking:
            await self._error(ws, session, "no_conversation", client_id=frame.client_id)
            return
        # Typed details are claims (issue #15): kept with the incident, never the identity.
        contact = session.contact or Contact(visitor_id=session.visitor)
        typed = {"name": frame.name, "email": frame.email, "phone": frame.phone}
        claims = {**{k: v for k, v in typed.items() if v}, **session.claims}
        text = self.gw.texts.render(
            "webchat_details",
            session.lang,
            name=frame.name,
            email=frame.email,
            phone=frame.phone,
            severity=frame.severity,
        )
        msg = self._inbound(
            session,
            frame.client_id,
            json.dumps({"type": "details"}),
            contact=contact,
            claims=claims,
            text=text,
            chosen_country=session.country,
            severity=frame.severity,
            tracking_hints=(session.tracking,),
            author=claims.get("name") or ui_texts(self.gw, session.lang).get("visitor", "visitor"),
        )
        accepted = await self._accept(ws, session, msg, frame.client_id, frame.email)
        if accepted is not None:
            session.claims = claims
            frame_out = {"type": "details_saved", "client_id": frame.client_id}
            await ws.send_str(_dump({**frame_out, "id": accepted[0].message_id}))

    async def _committed(
        self,
        ws: web.WebSocketResponse,
        session: Session,
        receipt: Any,
        cid: str | None,
        text: str,
        confirmed: bool = False,
    ) -> None:
        assert session.visitor is not None
        ack = {"type": "ack", "client_id": cid, "id": receipt.message_id}
        await ws.send_str(_dump({**ack, "tracking": receipt.tracking}))
        if receipt.tracking != session.tracking or receipt.created:
            session.tracking = receipt.tracking
            email = session.claims.get("email")
            await ws.send_str(_dump(ticket_frame(self.gw, receipt, email, confirmed)))
        if not receipt.duplicate:  # the visitor's other tabs show it too
            frame = {"type": "message", "from": "customer", "text": text}
            frame.update(at=iso(self.gw.clock()), id=receipt.message_id, client_id=cid)
            frame["tracking"] = receipt.tracking
            await self.fan_out(session.visitor, _dump(frame), skip=ws)


def _client_id_of(raw: str) -> str | None:
    try:
        value = json.loads(raw).get("client_id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return value if isinstance(value, str) and len(value) <= 64 else None


def setup(gw: Gateway) -> None:
    """Register the chat page, widget, socket and the `webchat` outbox sender."""
    chat = WebChat(gw)
    gw.app[HUB] = chat.hub
    gw.extras["webchat"] = chat
    ChatPages(gw).add_routes(gw.app)
    gw.app.router.add_get("/chat/ws", chat.socket)
    gw.app.router.add_post("/chat/upload", make_upload(chat))
    gw.add_migrations("webchat", presence.MIGRATIONS)
    gw.app.cleanup_ctx.append(chat.lifecycle)
    gw.outbox.register("webchat", Delivery(gw, chat.fan_out).send)
    gw.reply_guards["webchat"] = email_guard
    gw.add_migrations("webchat_email", confirm.MIGRATIONS)  # own component: presence's versions
    confirm.add_routes(gw)

"""POST /chat/upload: a customer's image (screenshot, photo) into their chat conversation.

The chat page sends the image's bytes as the body (the widget shrinks big photos first), with
the visitor's signed token as `Authorization: Bearer`, the conversation's tracking number and a
client id (the dedupe key, as for chat frames). Only PNG, JPEG, GIF and WebP whose bytes are
what their type says are taken, and only into a conversation the visitor takes part in; the
answer (200 with the message id) comes after the commit.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from adapters.webchat.page import normalize_origin
from adapters.webchat.token import verify_token
from gateway.core.errors import Rejected
from gateway.core.model import AttachmentIn, Contact, Inbound
from gateway.core.tracking import parse_tracking
from gateway.store.tx import Tx
from gateway.web.api import raster_image
from gateway.web.http import error_response

if TYPE_CHECKING:
    from adapters.webchat.ws import WebChat

IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NAME = re.compile(r"[^\w .()-]+")


def clean_filename(name: str, content_type: str) -> str:
    """A short, safe file name with the extension its type says."""
    stem = _NAME.sub("", name.rsplit(".", 1)[0]).strip(" .")[:60] or "imagen"
    return f"{stem}.{IMAGE_TYPES[content_type]}"


def make_upload(chat: WebChat) -> Any:
    """The handler, bound to the chat of this gateway."""
    gw = chat.gw

    async def upload(request: web.Request) -> web.Response:
        origin = normalize_origin(request.headers.get("Origin", ""))
        if origin is None or origin not in chat.origins:
            return error_response(403, "this origin may not send images to the chat")
        auth = request.headers.get("Authorization", "")
        visitor = (
            verify_token(gw.secret_key, auth[7:].strip(), gw.clock())
            if auth[:7].lower() == "bearer "
            else None
        )
        if visitor is None:
            return error_response(401, "the chat token is missing or expired: reload the chat")
        content_type = (request.content_type or "").lower()
        if content_type not in IMAGE_TYPES:
            raise Rejected("only PNG, JPEG, GIF or WebP images", field="Content-Type")
        client_id = request.query.get("client_id", "")
        if not _CLIENT_ID.match(client_id):
            raise Rejected("client_id is missing or malformed", field="client_id")
        tracking = parse_tracking(request.query.get("tracking", "").strip().upper())
        if tracking is None:
            raise Rejected("tracking is missing or not a tracking number", field="tracking")
        data = await request.read()  # the app's body limit answers 413 above it
        if not raster_image(content_type, data):
            raise Rejected("the file is not the image its type says", field="Content-Type")
        if not chat.hub.visitor_allows(visitor):
            return error_response(429, "too many messages; wait a moment")

        def takes_part(tx: Tx) -> bool:
            row = tx.incident_by_tracking(tracking)
            return row is not None and tx.is_participant(row["id"], visitor)

        if not await gw.store.read(takes_part):
            return error_response(409, "start the conversation first")
        name = clean_filename(request.query.get("name", ""), content_type)
        caption = request.query.get("caption", "").strip()[:500]
        receipt = await gw.intake.accept(
            Inbound(
                channel="webchat",
                provider_id=f"{visitor}:{client_id}",
                contact=Contact(visitor_id=visitor),
                text=caption or f"[imagen: {name}]",
                received_at=gw.clock(),
                attachments=(AttachmentIn(name, content_type, len(data), data=data),),
                tracking_hints=(tracking,),
                thread_by_contact=True,
                acknowledge=False,
            )
        )
        return web.json_response(
            {"id": receipt.message_id, "tracking": receipt.tracking, "filename": name}
        )

    return upload

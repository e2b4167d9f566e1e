"""Web chat: the website's widget, the standalone chat page and their WebSocket.

Wire: JSON text frames over `GET /chat/ws` (CONTRACT "WebSocket chat"), a visitor known only by
its signed token; `GET /chat/widget.js` and `GET /chat` serve the widget and page with their
static files (`static/`, `templates/`). Agents' replies reach the visitor's socket, or by
email when the visitor has left.
"""

from adapters.webchat.ws import setup

__all__ = ["setup"]

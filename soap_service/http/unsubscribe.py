"""``/u/{token}``: the one-click unsubscribe link of profile-based messages (RFC 8058).

``GET`` (a person following the link) shows a small confirmation page whose form posts
back to the same URL: a link scanner that fetches every URL of a mail unsubscribes
nobody.  ``POST`` (that form, or a mail client's one-click ``List-Unsubscribe=One-Click``
POST) records the opt-out of the token's channel and answers a confirmation page.  The
token is the authority (signed, ``soap_service.unsubscribe``): no session, no CSRF
token.  A forged, altered or unknown token answers 404 and records nothing.  Pages are
plain HTML that work without JavaScript, every inserted value escaped.
"""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING

from soap_service import unsubscribe
from soap_service.errors import ClientError, ServerError
from soap_service.http.body import BodyTooLarge, read_body
from soap_service.http.wsgi import Request, Response

if TYPE_CHECKING:
    from soap_service.http.app import WebApp

log = logging.getLogger(__name__)
PREFIX = unsubscribe.PREFIX
MAX_BODY = 4096
_HEADERS = [("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; "
                                        "form-action 'self'")]
_CHANNEL_WORDS = {"email": "emails", "sms": "text messages", "push": "push notifications"}


def _page(status: int, title: str, body_html: str) -> Response:
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title>"
            f'<style>body{{font-family:sans-serif;max-width:32rem;margin:3rem auto;'
            f'padding:0 1rem;line-height:1.5}}button{{font-size:1rem;padding:.5rem 1rem}}'
            f"</style></head><body><main><h1>{html.escape(title)}</h1>{body_html}</main>"
            f"</body></html>")
    return Response(status, page.encode("utf-8"), "text/html; charset=utf-8", list(_HEADERS))


def _invalid() -> Response:
    return _page(404, "Link not valid",
                 "<p>This unsubscribe link is not valid. Use the link of a message you "
                 "received, as it is.</p>")


def unsubscribe_endpoint(app: WebApp, request: Request) -> Response:
    """GET: the confirmation form; POST: record the opt-out (see the module docstring)."""
    token = request.path[len(PREFIX):]
    verified = unsubscribe.verify_token(app.settings.secret, token) if token else None
    if request.method == "POST":
        try:
            read_body(request.environ, MAX_BODY)  # drained, whatever it says
        except (BodyTooLarge, ClientError):
            return _page(413, "Request too large", "<p>The request was not understood.</p>")
    if verified is None:
        log.info("unsubscribe.bad_token method=%s", request.method)
        return _invalid()
    what = _CHANNEL_WORDS[verified.channel.value]
    if request.method != "POST":
        action = html.escape(request.path, quote=True)
        return _page(200, "Unsubscribe", (
            f"<p>Stop receiving {what} of this kind?</p>"
            f'<form method="post" action="{action}">'
            f'<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            f'<button type="submit">Unsubscribe</button></form>'))
    try:
        profile = unsubscribe.record(app.db, verified)
    except ServerError:
        log.warning("unsubscribe.unavailable")
        return _page(503, "Try again later",
                     "<p>We could not record your request just now. Please try again.</p>")
    if profile is None:
        return _invalid()
    log.info("unsubscribe.recorded channel=%s event=%s", verified.channel.value,
             verified.event_id)
    return _page(200, "You are unsubscribed",
                 f"<p>You will no longer receive {what} from us.</p>")

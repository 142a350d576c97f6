"""Open and click tracking: signed tokens, HTML instrumentation, machine-open heuristics.

Pure functions only (no database, no HTTP): the dispatch step ``steps.track_links`` calls
:func:`instrument_message` on each rendered email; the tracking endpoints
(``http/tracking.py``) call :func:`verify_token` and :func:`is_machine` and hand the result to
the store.  A token is the event id (plus the
target URL for a click) signed with HMAC-SHA256 under ``settings.secret``: whoever alters a
byte of it gets nothing recorded and no redirect.
"""

from __future__ import annotations

import html
import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote, urlsplit

from soap_service import signed
from soap_service.config import Settings
from soap_service.models import RenderedMessage

OPEN = "open"
CLICK = "click"
_KIND_CODES = {OPEN: "o", CLICK: "c"}
_PURPOSE = b"mc-track"  # the HMAC label (soap_service/signed.py)
# longer click tokens are not made (the link stays as it is): gunicorn refuses request
# lines over 4094 bytes, so a longer /r/c/ URL would break the reader's click
MAX_TOKEN = 3800
# an open this soon after the message was accepted is a scanner or a prefetch, not a person
MACHINE_OPEN_WINDOW = timedelta(seconds=2)
# user agents of image proxies, link scanners and previewers (lower-case substrings)
MACHINE_AGENTS = (
    "googleimageproxy",
    "yahoomailproxy",
    "ymailproxy",
    "bingpreview",
    "proofpoint",
    "mimecast",
    "barracuda",
    "symantec",
    "messagelabs",
    "safelinks",
    "facebookexternalhit",
    "slackbot",
    "twitterbot",
    "linkedinbot",
    "whatsapp",
    "skypeuripreview",
    "python-",
    "curl/",
    "wget/",
    "go-http-client",
    "java/",
    "okhttp",
    "headlesschrome",
    "phantomjs",
    "crawler",
    "spider",
    "prefetch",
    "scanner",
)
# image-prefetching proxies identified by network (Apple Mail Privacy Protection)
MACHINE_NETWORKS = (ipaddress.ip_network("17.0.0.0/8"),)
# "Googlebot/2.1", "bot;", "(+http://example.com/bot.html)" but not a "Cubot" phone model
_BOT_WORD = re.compile(r"bot[/;)]|\bbot\b|\+https?:")


@dataclass(frozen=True)
class TrackingToken:
    """What a verified token says: which event, open or click, and the click's target."""

    kind: str
    event_id: int
    url: str = ""


def make_token(secret: str, kind: str, event_id: int, url: str = "") -> str:
    """A URL-safe token ``<payload>.<signature>`` for an open or a click on ``url``."""
    payload = f"{_KIND_CODES[kind]}:{event_id}"
    if kind == CLICK:
        payload += f":{url}"
    return signed.sign(secret, _PURPOSE, payload.encode("utf-8"))


def verify_token(secret: str, token: str, kind: str) -> TrackingToken | None:
    """The token's content if it is well-formed, of ``kind`` and correctly signed; else None."""
    raw = signed.unsign(secret, _PURPOSE, token, MAX_TOKEN)
    if raw is None:
        return None
    try:
        code, event_part, *rest = raw.decode("utf-8").split(":", 2)
        event_id = int(event_part)
    except (UnicodeDecodeError, ValueError):
        return None
    if code != _KIND_CODES[kind] or event_id <= 0:
        return None
    url = rest[0] if rest else ""
    if kind == CLICK and not is_trackable_url(url):
        return None
    return TrackingToken(kind=kind, event_id=event_id, url=url)


def is_trackable_url(url: str) -> bool:
    """Only absolute http(s) links are rewritten, and only those are ever redirected to."""
    if any(ord(ch) < 32 or ch == "\x7f" for ch in url):  # header injection, obfuscation
        return False
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    return parts.scheme.lower() in {"http", "https"} and bool(parts.netloc)


def location_header(url: str) -> str:
    """``url`` as a Location header value: non-ASCII characters percent-encoded."""
    return quote(url, safe="!#$%&'()*+,/:;=?@[]~")


# ---------------------------------------------------------------- HTML instrumentation

_A_TAG = re.compile(r"<a\b[^>]*>", re.IGNORECASE)
# the href attribute itself, not data-href or xlink:href
_HREF = re.compile(r"""((?<![\w:-])href\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""",
                   re.IGNORECASE)
_NOTRACK = re.compile(r"\sdata-notrack\b", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def click_url(base_url: str, secret: str, event_id: int, url: str) -> str:
    return f"{base_url}/r/c/{make_token(secret, CLICK, event_id, url)}"


def open_url(base_url: str, secret: str, event_id: int) -> str:
    return f"{base_url}/r/o/{make_token(secret, OPEN, event_id)}"


def instrument_html(html_text: str, event_id: int, base_url: str, secret: str,
                    public_url: str = "") -> str:
    """Rewrite http(s) links to the click redirect and add the 1x1 open pixel.

    Links with a ``data-notrack`` attribute, ``mailto:``/``tel:``/anchors, template
    leftovers that are not absolute http(s) URLs and our unsubscribe links (under
    ``public_url``) are left as they are.
    """
    if not html_text:
        return html_text
    base = base_url.rstrip("/")
    unsubscribe_base = (public_url or base_url).rstrip("/")

    def rewrite_tag(match: re.Match[str]) -> str:
        tag = match.group(0)
        if _NOTRACK.search(tag):
            return tag
        href = _HREF.search(tag)
        if href is None:
            return tag
        raw = next(g for g in href.groups()[1:] if g is not None)
        target = html.unescape(raw).strip()
        if not is_trackable_url(target) or target.startswith(f"{unsubscribe_base}/u/"):
            return tag  # an unsubscribe link goes straight to its page
        token = make_token(secret, CLICK, event_id, target)
        if len(token) > MAX_TOKEN:
            return tag
        tracked = f"{base}/r/c/{token}"
        return tag[: href.start()] + f'{href.group(1)}"{tracked}"' + tag[href.end():]

    body = _A_TAG.sub(rewrite_tag, html_text)
    pixel = (
        f'<img src="{open_url(base, secret, event_id)}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0" />'
    )
    ends = list(_BODY_END.finditer(body))
    if ends:
        at = ends[-1].start()
        return body[:at] + pixel + body[at:]
    return body + pixel


def instrument_message(rendered: RenderedMessage, event_id: int, settings: Settings
                       ) -> RenderedMessage:
    """The worker's step after rendering: the HTML part with tracked links and pixel."""
    if not rendered.html:
        return rendered
    html_text = instrument_html(rendered.html, event_id, settings.effective_tracking_url,
                                settings.secret, settings.public_url)
    # dataclasses.replace without its per-call look at the fields (a third of the cost)
    return RenderedMessage(**{**rendered.__dict__, "html": html_text})


# ---------------------------------------------------------------- machine opens


def is_machine_agent(user_agent: str | None) -> bool:
    """True for an empty user agent or one of a known proxy, scanner or prefetcher."""
    agent = (user_agent or "").strip().lower()
    if not agent or _BOT_WORD.search(agent):
        return True
    return any(marker in agent for marker in MACHINE_AGENTS)


def is_machine_ip(ip: str | None) -> bool:
    """Apple Mail Privacy Protection fetches every image through Apple's own network."""
    try:
        address = ipaddress.ip_address((ip or "").strip())
    except ValueError:
        return False
    return any(address in network for network in MACHINE_NETWORKS
               if network.version == address.version)


def is_machine(user_agent: str | None, sent_at: datetime | None, at: datetime,
               ip: str | None = None) -> bool:
    """An obvious machine hit: a machine user agent or network, or within seconds of sending."""
    if is_machine_agent(user_agent) or is_machine_ip(ip):
        return True
    return sent_at is not None and timedelta(0) <= at - sent_at <= MACHINE_OPEN_WINDOW

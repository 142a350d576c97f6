"""Tracking tokens, HTML instrumentation and machine-open heuristics (pure functions)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from soap_service import track
from soap_service.durations import parse_duration
from soap_service.errors import ValidationFailed

SECRET = "s3cret"
BASE = "https://t.example.com"
SENT = datetime(2026, 1, 1, 12, 0, 0)


def test_open_token_round_trip() -> None:
    """An open token verifies to its event id under the same secret."""
    token = track.make_token(SECRET, track.OPEN, 42)
    assert track.verify_token(SECRET, token, track.OPEN) == track.TrackingToken("open", 42)


def test_click_token_carries_the_exact_url() -> None:
    """A click token gives back the target URL byte for byte, query string included."""
    url = "https://shop.example.com/p?id=1&ref=mail#top"
    token = track.make_token(SECRET, track.CLICK, 7, url)
    assert track.verify_token(SECRET, token, track.CLICK) == track.TrackingToken("click", 7, url)


def test_token_is_url_safe() -> None:
    """Tokens only use URL-safe characters, so they need no escaping in a path."""
    token = track.make_token(SECRET, track.CLICK, 7, "https://x.org/é?a=b c")
    assert re.fullmatch(r"[A-Za-z0-9_\-.]+", token)


@pytest.mark.parametrize("mutate", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature altered
    lambda t: ("X" if t[0] != "X" else "Y") + t[1:],  # payload altered
    lambda t: t.split(".")[0],  # signature removed
    lambda t: t + "x",  # garbage appended
    lambda t: "",
    lambda t: "...",
    lambda t: "%%%.%%%",
])
def test_altered_tokens_are_refused(mutate) -> None:
    """Any change to a token makes it fail verification."""
    token = track.make_token(SECRET, track.CLICK, 7, "https://x.org/")
    assert track.verify_token(SECRET, mutate(token), track.CLICK) is None


def test_every_single_character_change_is_refused() -> None:
    """No one-character change anywhere verifies, including the last character of each
    base64 part, whose low bits base64 decoders ignore."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for kind, url in ((track.OPEN, ""), (track.CLICK, "https://x.org/a?b=1")):
        token = track.make_token(SECRET, kind, 7, url)
        assert track.verify_token(SECRET, token, kind) is not None
        for at, original in enumerate(token):
            if original == ".":
                continue
            for ch in alphabet.replace(original, ""):
                altered = token[:at] + ch + token[at + 1:]
                assert track.verify_token(SECRET, altered, kind) is None, (at, ch)


def test_token_from_another_secret_is_refused() -> None:
    """A token signed with another secret does not verify."""
    token = track.make_token("other", track.OPEN, 42)
    assert track.verify_token(SECRET, token, track.OPEN) is None


def test_kinds_are_not_interchangeable() -> None:
    """An open token is not a click token and vice versa (the kind is signed)."""
    open_token = track.make_token(SECRET, track.OPEN, 42)
    click_token = track.make_token(SECRET, track.CLICK, 42, "https://x.org/")
    assert track.verify_token(SECRET, open_token, track.CLICK) is None
    assert track.verify_token(SECRET, click_token, track.OPEN) is None


def test_signed_non_http_target_is_not_redirected() -> None:
    """Even correctly signed, a click token for a javascript: URL is refused."""
    token = track.make_token(SECRET, track.CLICK, 3, "javascript:alert(1)")
    assert track.verify_token(SECRET, token, track.CLICK) is None


def test_url_with_line_break_is_not_trackable() -> None:
    """A URL with control characters (header injection) is neither rewritten nor redirected."""
    assert not track.is_trackable_url("https://x.org/\r\nSet-Cookie: a=b")
    assert track.is_trackable_url("https://x.org/a")


def test_location_header_is_ascii() -> None:
    """Non-ASCII characters of a target are percent-encoded for the Location header."""
    assert track.location_header("https://x.org/é?q=ü") == "https://x.org/%C3%A9?q=%C3%BC"


def _tokens(html: str, kind: str) -> list[str]:
    return re.findall(rf"{re.escape(BASE)}/r/{kind}/([A-Za-z0-9_\-.]+)", html)


def test_links_are_rewritten_to_signed_redirects() -> None:
    """Each http(s) link becomes /r/c/<token> whose token names the original URL."""
    html = ('<p><a href="https://a.example/x?u=1&amp;v=2">A</a> '
            "<a class='b' href='http://b.example/'>B</a></p>")
    out = track.instrument_html(html, 9, BASE, SECRET)
    targets = [track.verify_token(SECRET, t, track.CLICK) for t in _tokens(out, "c")]
    assert [(t.event_id, t.url) for t in targets if t] == [
        (9, "https://a.example/x?u=1&v=2"), (9, "http://b.example/")]
    assert "class='b'" in out and ">A</a>" in out


def test_only_the_href_attribute_is_rewritten() -> None:
    """``data-href`` and ``xlink:href`` are not the link: the real ``href`` is rewritten."""
    html = '<a data-href="https://other.example/" href="https://real.example/">r</a>'
    out = track.instrument_html(html, 9, BASE, SECRET)
    [token] = _tokens(out, "c")
    assert track.verify_token(SECRET, token, track.CLICK).url == "https://real.example/"
    assert 'data-href="https://other.example/"' in out


def test_a_link_too_long_for_a_request_line_is_left_untracked() -> None:
    """A click URL the HTTP server would refuse (request line over 4 KB) is not made: the
    link keeps its own target; a long but acceptable one is tracked and verifies."""
    long_ok = "https://x.example/?q=" + "a" * 2000
    too_long = "https://x.example/?q=" + "b" * 3000
    out = track.instrument_html(f'<a href="{long_ok}">1</a><a href="{too_long}">2</a>',
                                9, BASE, SECRET)
    [token] = _tokens(out, "c")
    assert len(token) <= track.MAX_TOKEN
    assert track.verify_token(SECRET, token, track.CLICK).url == long_ok
    assert f'<a href="{too_long}">2</a>' in out


def test_notrack_mailto_and_anchor_links_are_kept() -> None:
    """data-notrack, mailto:, tel: and #anchor links are left untouched."""
    html = ('<a data-notrack href="https://keep.example/">k</a><a href="mailto:x@y.z">m</a>'
            '<a href="tel:+331">t</a><a href="#top">a</a><a name="n">n</a>')
    out = track.instrument_html(html, 9, BASE, SECRET)
    assert _tokens(out, "c") == []
    assert out.startswith(html)


def test_pixel_goes_before_body_end() -> None:
    """The 1x1 open pixel is inserted just before </body>, with a verifiable token."""
    out = track.instrument_html("<html><body><p>Hi</p></body></html>", 5, BASE, SECRET)
    assert out.endswith("</body></html>")
    (token,) = _tokens(out, "o")
    assert track.verify_token(SECRET, token, track.OPEN) == track.TrackingToken("open", 5)
    assert 'width="1" height="1"' in out


def test_pixel_is_appended_to_a_fragment() -> None:
    """HTML without a body element gets the pixel at the end."""
    out = track.instrument_html("<p>Hi</p>", 5, BASE + "/", SECRET)
    assert out.startswith("<p>Hi</p><img src=\"https://t.example.com/r/o/")


@pytest.mark.parametrize("agent", [
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; Barracuda Sentinel)",
    "python-requests/2.31",
    "",
])
def test_machine_agents_are_flagged(agent: str) -> None:
    """Image proxies, scanners, bots and empty user agents are machine hits."""
    assert track.is_machine(agent, SENT, SENT + timedelta(hours=1))


@pytest.mark.parametrize("agent", [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 9; CUBOT X19) AppleWebKit/537.36 Chrome/120 Mobile",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17029; Pro)",
])
def test_people_are_not_flagged(agent: str) -> None:
    """Ordinary mail clients and browsers a while after sending are human hits."""
    assert not track.is_machine(agent, SENT, SENT + timedelta(minutes=5))


def test_apple_privacy_proxy_network_is_machine() -> None:
    """Opens from Apple's 17.0.0.0/8 (Mail Privacy Protection prefetch) are machine opens."""
    agent = "Mozilla/5.0"
    later = SENT + timedelta(hours=1)
    assert track.is_machine(agent, SENT, later, "17.58.1.2")
    assert not track.is_machine(agent, SENT, later, "203.0.113.5")
    assert not track.is_machine(agent, SENT, later, "2001:db8::1")
    assert not track.is_machine(agent, SENT, later, "not-an-ip")


def test_open_right_after_sending_is_machine() -> None:
    """An open within two seconds of the send is a prefetch; after that it is not."""
    agent = "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15"
    assert track.is_machine(agent, SENT, SENT + timedelta(seconds=1))
    assert not track.is_machine(agent, SENT, SENT + timedelta(seconds=3))
    assert not track.is_machine(agent, None, SENT)


@pytest.mark.parametrize(("text", "seconds"), [
    ("3d", 3 * 86400), ("36h", 36 * 3600), ("1d12h", 86400 + 12 * 3600), ("90m", 5400),
    ("45s", 45), ("120", 120), ("1w", 7 * 86400),
])
def test_parse_duration(text: str, seconds: int) -> None:
    """Durations accept s/m/h/d/w units, combined, or plain seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "3x", "d3", "3 days", "-1d", "99999999999d",
                                  "99999999999999999999"])
def test_parse_duration_rejects_garbage(text: str) -> None:
    """Anything else is a validation error, not a silent zero; so is a duration too long
    for the database's integer columns and for date arithmetic."""
    with pytest.raises(ValidationFailed):
        parse_duration(text)

"""The one rendered-message -> email builder that sends and proofs share."""

from __future__ import annotations

import pytest

from soap_service.errors import RenderError
from soap_service.messages import email_message
from soap_service.models import Channel, RenderedMessage

BOTH = RenderedMessage(channel=Channel.EMAIL, subject="Hi", html="<p>Hi</p>", text="Hi",
                       from_addr="Shop <shop@example.com>", reply_to="help@example.com")


@pytest.mark.parametrize(("email_format", "html", "text"), [
    (0, "<p>Hi</p>", "Hi"),  # unknown: both parts
    (1, "", "Hi"),  # text only
    (2, "<p>Hi</p>", ""),  # HTML only
    (7, "<p>Hi</p>", "Hi"),  # not a format we know: both
])
def test_email_format_picks_the_parts(email_format: int, html: str, text: str) -> None:
    """``emailFormat`` 1 keeps the text part, 2 the HTML part, anything else both."""
    msg = email_message(BOTH, "a@example.com", "<id@example.com>", email_format=email_format)
    assert (msg.html, msg.text) == (html, text)
    assert (msg.from_addr, msg.to, msg.reply_to, msg.subject, msg.message_id) == \
        ("Shop <shop@example.com>", "a@example.com", "help@example.com", "Hi",
         "<id@example.com>")


def test_a_format_whose_part_is_empty_keeps_the_other() -> None:
    """Text-only asked of an HTML-only template sends the HTML rather than nothing."""
    html_only = RenderedMessage(channel=Channel.EMAIL, subject="s", html="<p>x</p>",
                                from_addr="a@example.com")
    assert email_message(html_only, "b@example.com", "<i@x.example>",
                         email_format=1).html == "<p>x</p>"


def test_no_from_address_is_refused_and_headers_are_copied() -> None:
    """A From that rendered empty is a RenderError (the event fails, the proof reports
    it); the caller's headers are kept, on a copy."""
    headers = {"X-MC-Event-Id": "7"}
    msg = email_message(BOTH, "a@example.com", "<i@x.example>", headers=headers)
    assert msg.headers == headers and msg.headers is not headers
    with pytest.raises(RenderError, match="no From address"):
        email_message(RenderedMessage(channel=Channel.EMAIL, subject="s", text="t"),
                      "a@example.com", "<i@x.example>")

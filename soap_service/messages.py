"""From a rendered message to what a channel sends: the one builder of each channel's message.

:func:`email_message`, :func:`sms_message` and :func:`push_message` turn a
:class:`~soap_service.models.RenderedMessage` into the channel's message
(``steps.build_message`` picks by the event's channel).  SMS and push messages carry a
:func:`reference` that is stable per event ("mc.{instance}.{event id}"), as the email's
``Message-ID`` is: a re-send carries the same one, and a provider may name it in a
delivery callback.

A send and a proof (``proof.send_proofs``) address the same
:class:`~soap_service.models.RenderedMessage` the same way, so a proof shows what an
event would get: the event's ``emailFormat`` picks the parts (1 text only, 2 HTML only,
0 both; a format whose part is empty keeps the other), and a message without a From
(a personalised From that rendered empty) is refused.  Pure; the MIME bytes are the
``smtp`` connector's (``channels.smtp.build_mime_bytes``).
"""

from __future__ import annotations

from datetime import datetime

from soap_service.addresses import is_email_address
from soap_service.errors import RenderError, ValidationFailed
from soap_service.models import (
    Channel,
    EmailMessage,
    PushMessage,
    PushPlatform,
    RenderedMessage,
    SmsMessage,
)

TEXT_ONLY = 1  # emailFormat values of the suite (0: unknown, both parts)
HTML_ONLY = 2


def email_message(rendered: RenderedMessage, to: str, message_id: str, *,
                  email_format: int = 0, headers: dict[str, str] | None = None,
                  return_path: str = "") -> EmailMessage:
    """The email for ``to``; :class:`RenderError` when it has no From address.
    ``return_path``, when given, is the envelope sender (a VERP address)."""
    if not rendered.from_addr:
        raise RenderError("template has no From address")
    html, text = rendered.html, rendered.text
    if email_format == TEXT_ONLY and text:
        html = ""
    elif email_format == HTML_ONLY and html:
        text = ""
    return EmailMessage(
        from_addr=rendered.from_addr, to=to, subject=rendered.subject, message_id=message_id,
        html=html, text=text, reply_to=rendered.reply_to, headers=dict(headers or {}),
        return_path=return_path,
    )


def reference(instance_id: int, event_id: int) -> str:
    """Our id of an event's SMS or notification: the same for every attempt."""
    return f"mc.{instance_id}.{event_id}"


def sms_message(rendered: RenderedMessage, ref: str) -> SmsMessage:
    """The SMS; the template's ``from`` (when set) is the sender, else the connector's.
    An empty text is refused (:class:`RenderError`)."""
    if not rendered.sms.strip():
        raise RenderError("the SMS text rendered empty")
    return SmsMessage(text=rendered.sms, reference=ref, sender=" ".join(rendered.from_addr.split()))


def push_message(rendered: RenderedMessage, platform: PushPlatform, ref: str, *,
                 expiration: datetime | None = None, urgent: bool = True) -> PushMessage:
    """The notification for ``platform``: title, body and data as rendered, not delivered
    after ``expiration`` (the event's), high priority when ``urgent`` (real-time).  One
    with no title, body or data is refused (:class:`RenderError`)."""
    title, body = rendered.push_title.strip(), rendered.push_body.strip()
    if not (title or body or rendered.push_data):
        raise RenderError("the notification rendered empty (no title, body or data)")
    return PushMessage(platform=platform, title=title, body=body, reference=ref,
                       data=dict(rendered.push_data), expiration=expiration, urgent=urgent)


TEST_TEXT = "Message Center: a test message through connector {name}."


def connector_test_message(channel: Channel, name: str, kind: str, to: str, *,
                 default_country_code: str = "", from_addr: str = "",
                 platforms: tuple[PushPlatform, ...] = ()
                 ) -> tuple[EmailMessage | SmsMessage | PushMessage, str]:
    """The message ``msgcenter connector test`` sends through connector ``name`` to
    ``to``, and the address (checked and normalised as ingest would: a phone number in
    E.164).  :class:`ValidationFailed` names what is wrong with ``to``."""
    text = TEST_TEXT.format(name=name)
    ref = f"mc.test.{name}"
    if channel is Channel.EMAIL:
        if not is_email_address(to.strip()):
            raise ValidationFailed("--to is not an email address")
        return EmailMessage(from_addr=from_addr, to=to.strip(), subject=text,
                            message_id=f"<{ref}@{from_addr.rpartition('@')[2] or 'localhost'}>",
                            text=text), to.strip()
    if channel is Channel.SMS:
        from soap_service.phone import normalise_phone

        return SmsMessage(text=text, reference=ref), normalise_phone(
            to, default_country_code or None, field="--to")
    if not to.strip():
        raise ValidationFailed("--to must be a device token")
    platform = PushPlatform.IOS if kind == "apns" else (platforms or (PushPlatform.ANDROID,))[0]
    return PushMessage(platform=platform, title="Message Center", body=text,
                       reference=ref), to.strip()

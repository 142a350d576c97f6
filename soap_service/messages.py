"""From a rendered message to the email a channel sends: the one builder, sends and proofs.

A send (``steps.build_email``) and a proof (``proof.send_proofs``) address the same
:class:`~soap_service.models.RenderedMessage` the same way, so a proof shows what an
event would get: the event's ``emailFormat`` picks the parts (1 text only, 2 HTML only,
0 both; a format whose part is empty keeps the other), and a message without a From
(a personalised From that rendered empty) is refused.  Pure; the MIME bytes are the
email channel's (``channels.email.build_mime_bytes``).
"""

from __future__ import annotations

from soap_service.errors import RenderError
from soap_service.models import EmailMessage, RenderedMessage

TEXT_ONLY = 1  # emailFormat values of the suite (0: unknown, both parts)
HTML_ONLY = 2


def email_message(rendered: RenderedMessage, to: str, message_id: str, *,
                  email_format: int = 0, headers: dict[str, str] | None = None) -> EmailMessage:
    """The email for ``to``; :class:`RenderError` when it has no From address."""
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
    )

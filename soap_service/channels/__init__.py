"""Delivery channels: each turns an addressed message into a SendResult value.

``email`` (SMTP via aiosmtplib) is the first; SMS and push connectors follow the same
shape: ``async send(msg) -> SendResult`` and ``async close()``.
"""

from soap_service.channels.email import EmailChannel, build_mime, send_messages

__all__ = ["EmailChannel", "build_mime", "send_messages"]

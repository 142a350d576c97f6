"""The one email-address check: what an event's ``email``, a seed and a From must look like.

``local@domain``: a local part without spaces, ``@``, angle brackets, parentheses,
square brackets, commas, semicolons, colons or double quotes, and a domain of at least two
dot-separated DNS labels (letters, digits, inner hyphens).  This is deliberately the rule
ingest has always applied to ``PushEvent``: it is the address a relay will accept in
``RCPT TO`` without quoting, and a seed or a From is checked the same way so that what a
proof or preview shows is what an event could be sent to.  Quoted local parts,
address literals (``user@[192.0.2.1]``), single-label domains (``root@localhost``) and
non-ASCII (IDN) domains are refused; an operator who needs one writes its ASCII form.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[^@\s<>()\[\],;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")


def is_email_address(value: str) -> bool:
    """Whether ``value`` (already stripped) is an address by the rule above."""
    return _EMAIL.fullmatch(value) is not None

"""Classification rules and the reading of bounces that are not RFC 3464 DSNs.

Pure functions over text: which kind a status code, an SMTP reply or a DSN ``Action``
means (the table in docs/bounces.md), and, for the plain-text bounces of qmail, Exim,
old Exchange and Postfix without its delivery-status part, which recipients failed with
which code.  Every pattern is bounded so scanning stays linear on hostile text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from soap_service.bounces.mime import addresses, clean
from soap_service.bounces.verp import is_return_path
from soap_service.models import BounceKind

DIAGNOSTIC_LIMIT = 1000

# RFC 3463 class.subject.detail; not part of a longer dotted number (IPs, versions, dates)
STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d]|\.\d)")
# an SMTP reply code at a word start, followed by a space, a dash or an enhanced code
_REPLY = re.compile(r"(?<![\w.:/#-])([45][0-5]\d)(?:[ -](?=\S)|$)", re.MULTILINE)

# where the copy of the original message starts in a plain-text bounce
_ORIGINAL = re.compile(
    r"(?im)^[ \t>]*(?:-{2,}[ \t]*)?(?:"
    r"below this line is a copy of the message"
    r"|this is a copy of the (?:message|headers)"
    r"|original message(?: headers)?(?: follows)?[ \t]*:?"
    r"|-+[ \t]*original message[ \t]*-+"
    r"|the original message was received at"
    r"|---+[ \t]*(?:returned|undelivered) message"
    r"|headers of the original message"
    r")"
)
_HARD_WORDS = re.compile(
    r"(?i)permanent(?:ly)? (?:error|failure|fatal)|will not (?:try|retry)|(?:have|I've) given up"
    r"|user unknown|unknown user|no such (?:user|mailbox|recipient)|does not exist"
    r"|(?:address|account)[^.\n]{0,40}(?:couldn't|could not|can't|cannot) be found"
    r"|recipient (?:address )?rejected|mailbox (?:unavailable|not found|disabled)"
    r"|invalid (?:recipient|mailbox|address)|address rejected|account (?:disabled|inactive)"
)
_SOFT_WORDS = re.compile(
    r"(?i)temporar(?:y|ily) (?:error|failure|problem|unavailable)|will (?:retry|try again)"
    r"|has not yet been delivered|delivery (?:is )?delayed|delivery incomplete"
    r"|mailbox (?:is )?full|over (?:the )?quota|quota exceeded|insufficient (?:disk )?space"
)
_DAEMONS = ("mailer-daemon", "mailer_daemon", "mail-daemon", "postmaster", "mailerdaemon",
            "mdaemon", "mail.delivery", "maildelivery", "mail-delivery")


def kind_of_status(status: str) -> BounceKind | None:
    """5.x.x → hard, 4.x.x → soft, 2.x.x → unknown (a success); None when absent."""
    return {"5": BounceKind.HARD, "4": BounceKind.SOFT, "2": BounceKind.UNKNOWN}.get(status[:1])


def kind_of_reply(code: str) -> BounceKind | None:
    return {"5": BounceKind.HARD, "4": BounceKind.SOFT}.get(code[:1])


def status_in(text: str) -> str:
    """The first RFC 3463 status code in ``text`` ("" when none)."""
    match = STATUS.search(text)
    return ".".join(match.groups()) if match else ""


def reply_in(text: str) -> str:
    match = _REPLY.search(text)
    return match.group(1) if match else ""


def classify(status: str, action: str = "", diagnostic: str = "") -> BounceKind:
    """The kind of one DSN recipient line.

    ``delivered`` / ``relayed`` / ``expanded`` are successes; ``delayed`` is still being
    tried (soft whatever the code); otherwise the status class decides, then the SMTP reply
    in the diagnostic, then the action alone (``failed`` → hard).  ``failed`` with a 4.x.x
    status (a relay gave up after temporary errors) stays soft: the address is not proven
    bad.
    """
    action = action.lower()
    if action in {"delivered", "relayed", "expanded"}:
        return BounceKind.UNKNOWN
    if action == "delayed":
        return BounceKind.SOFT
    kind = kind_of_status(status) or kind_of_status(status_in(diagnostic))
    if kind is None:
        kind = kind_of_reply(reply_in(diagnostic))
    if kind is None and action == "failed":
        kind = BounceKind.HARD
    return kind or BounceKind.UNKNOWN


def is_daemon(address: str) -> bool:
    local = address.partition("@")[0].lower()
    return any(local.startswith(d) for d in _DAEMONS)


def human_part(text: str) -> str:
    """The bounce's own words: ``text`` cut where the copy of the original begins."""
    match = _ORIGINAL.search(text)
    return text[: match.start()] if match else text


def _paragraph(text: str, pos: int) -> str:
    start = text.rfind("\n\n", 0, pos)
    end = text.find("\n\n", pos)
    return clean(text[start + 1 if start >= 0 else 0: end if end >= 0 else len(text)],
                 DIAGNOSTIC_LIMIT)


@dataclass(frozen=True)
class TextFailure:
    """One recipient found in a plain-text bounce."""

    recipient: str
    kind: BounceKind
    status: str
    diagnostic: str


def scan_text(text: str, ignore: set[str], named: list[str]) -> list[TextFailure]:
    """The failed recipients of a plain-text bounce ``text`` (its human part only).

    Each status code or SMTP reply is given to the nearest address before it (an address
    line, then the server's words, is how qmail, Exim, Exchange and Postfix write them);
    ``named`` recipients (Exim's ``X-Failed-Recipients``) are kept even without a code.
    Without any code, the wording decides (``permanent error``, ``mailbox full``...).
    ``ignore`` holds addresses that are not recipients (the bounce's own From / To).
    """
    found = [(pos, a) for pos, a in addresses(text)
             if a not in ignore and not is_daemon(a) and not is_return_path(a)]
    codes: list[tuple[int, str, str]] = []  # (position, status, reply)
    for match in STATUS.finditer(text):
        codes.append((match.start(), ".".join(match.groups()), ""))
    for match in _REPLY.finditer(text):
        codes.append((match.start(), "", match.group(1)))
    codes.sort()
    results: dict[str, TextFailure] = {}
    for pos, status, reply in codes[:500]:
        before = [a for p, a in found if p < pos]
        if named:
            owner = next((a for a in reversed(before) if a in named), named[0])
        elif before:
            owner = before[-1]
        else:
            owner = next((a for p, a in found if p > pos and p - pos < 300), "")
        if not owner:
            continue
        known = results.get(owner)
        if known is not None and (known.status or not status):
            continue  # the first enhanced code wins; a bare reply only until one is seen
        para = _paragraph(text, pos)
        kind = kind_of_status(status) or kind_of_reply(reply) or BounceKind.UNKNOWN
        status = status or status_in(para)
        if kind is BounceKind.UNKNOWN and status.startswith("2"):
            continue  # "2.0.0 Ok" and the like in a transcript are not failures
        results[owner] = TextFailure(owner, kind, status, para)
    for owner in named:
        if owner not in results:
            results[owner] = _by_words(owner, text)
    if not results and found:
        guess = _by_words(found[0][1], text)
        if guess.kind is not BounceKind.UNKNOWN:
            results[guess.recipient] = guess
    return list(results.values())[:100]


def _by_words(owner: str, text: str) -> TextFailure:
    hard, soft = _HARD_WORDS.search(text), _SOFT_WORDS.search(text)
    match = soft if soft and (not hard or soft.start() < hard.start()) else hard
    if match is None:
        return TextFailure(owner, BounceKind.UNKNOWN, "", clean(text, 200))
    kind = BounceKind.SOFT if match is soft else BounceKind.HARD
    return TextFailure(owner, kind, "", _paragraph(text, match.start()))

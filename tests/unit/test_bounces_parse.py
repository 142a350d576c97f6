"""Inbound bounce and complaint parsing over the fixture corpus, and on hostile input."""

from __future__ import annotations

from pathlib import Path

import pytest

from soap_service.bounces.parse import parse_report, read_reports
from soap_service.bounces.verp import parse_return_path
from soap_service.errors import ClientError, ReportTooLarge, UnreadableReport
from soap_service.models import BounceKind

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "bounces"
SECRET, DOMAIN = "fixture-secret", "bounce.example.com"
H, S, C, U = BounceKind.HARD, BounceKind.SOFT, BounceKind.COMPLAINT, BounceKind.UNKNOWN

# file -> [(kind, recipient, status, source)], then (event, attempt) named by the return
# path (None: not one of ours) and the original Message-ID ("" when the report has none)
EXPECTED: dict[str, tuple[list[tuple[BounceKind, str, str, str]], tuple[int, int] | None, str]] = {
    "postfix-dsn-hard.eml": (
        [(H, "jane.doe@customer.example.org", "5.1.1", "dsn")], (4242, 1),
        "6f1c2e0a-3b7d-4c1e-9a55-0d2b8c4e7f10@shop.example.com"),
    "sendmail-dsn-three-recipients.eml": (
        [(H, "nobody@customer.example.org", "5.1.1", "dsn"),
         (S, "slow@busy.example.com", "4.4.7", "dsn"),
         (U, "ok@fine.example.com", "2.0.0", "dsn")], (4243, 1),
        "0b7d3c55-91f2-4d0e-8a61-5cf2a3e2d901@shop.example.com"),
    "postfix-dsn-delayed.eml": (
        [(S, "full@mailbox.example.com", "4.2.2", "dsn")], (4244, 2),
        "a2b44e71-0c6f-4a4b-bb2e-71f0f3d8c9aa@shop.example.com"),
    "postfix-text-no-dsn.eml": (
        [(H, "k.weber@old.example.de", "5.7.1", "text")], (4242, 1), ""),
    "exim-text.eml": (
        [(H, "j.smith@customer.example.org", "5.1.1", "text")], (4242, 1),
        "c0ffee00-1234-4abc-9def-000000004242@shop.example.com"),
    "exchange2003-ndr.eml": (
        [(H, "m.müller@corp.example.com", "5.1.1", "text")], (4242, 1),
        "d1e2f3a4-b5c6-4d7e-8f90-a1b2c3d4e5f6@shop.example.com"),
    "exchange2010-dsn.eml": (
        [(H, "ann.other@corp.example.com", "5.1.1", "dsn")], (4242, 1),
        "e0e1e2e3-e4e5-4e6e-8e7e-e8e9eaebecee@shop.example.com"),
    "gmail-dsn.eml": (
        [(H, "no.such.person@gmail.com", "5.1.1", "dsn")], (4242, 1),
        "f00dfeed-aaaa-4bbb-8ccc-dddddddddddd@shop.example.com"),
    "gmail-delay-text.eml": (
        [(S, "quota@overfull.example.net", "4.2.2", "text")], (4244, 2),
        "b7c8d9e0-f1a2-4b3c-8d4e-5f6a7b8c9d0e@shop.example.com"),
    "qmail-text.eml": (
        [(H, "gone@isp.example.net", "5.1.1", "text"),
         (S, "stuck@far.example.org", "4.3.0", "text")], (4243, 1),
        "11111111-2222-4333-8444-555555555555@shop.example.com"),
    "dsn-base64-bad-charsets.eml": (
        [(H, "désabonné@client.example.fr", "5.2.1", "dsn")], (4242, 1), ""),
    "dsn-delivered-success.eml": (
        [(U, "happy@customer.example.org", "2.0.0", "dsn")], (4242, 1), ""),
    "arf-yahoo.eml": (
        [(C, "reader.one@yahoo.com", "", "arf")], (777, 1),
        "77777777-8888-4999-aaaa-bbbbbbbbbbbb@shop.example.com"),
    "arf-aol-redacted.eml": (
        [(C, "reader.two@aol.com", "", "arf")], (777, 1),
        "12121212-3434-4565-8787-909090909090@shop.example.com"),
    "jmrp-outlook.eml": (
        [(C, "reader.three@outlook.com", "", "jmrp")], (777, 1),
        "56565656-7878-4a9a-8bcb-dcdcdcdcdcdc@shop.example.com"),
    "autoreply-out-of-office.eml": ([(U, "", "", "autoreply")], (4242, 1), ""),
    "autoreply-x-autoreply.eml": ([(U, "", "", "autoreply")], (4242, 1), ""),
}


def test_every_fixture_has_an_expectation() -> None:
    """The table covers the whole corpus (a new fixture without a row fails here)."""
    files = {p.name for p in CORPUS.glob("*.eml")} - {"malformed-mime.eml"}
    assert files == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus(name: str) -> None:
    """Each real-world shape gives its recipients, classes, codes, return path and
    original Message-ID."""
    rows, target, message_id = EXPECTED[name]
    reports = parse_report((CORPUS / name).read_bytes())
    assert [(r.kind, r.recipient, r.status, r.source) for r in reports] == rows
    for report in reports:
        assert parse_return_path(report.return_path, SECRET, DOMAIN) == target
        assert report.message_id == message_id
        assert len(report.diagnostic) <= 1000


@pytest.mark.parametrize("line_ending", [b"\r\n", b"\r"])
def test_line_endings_do_not_matter(line_ending: bytes) -> None:
    """CRLF (as on the wire) and CR-only files read like LF ones."""
    raw = (CORPUS / "postfix-dsn-hard.eml").read_bytes().replace(b"\n", line_ending)
    (report,) = parse_report(raw)
    assert (report.kind, report.recipient, report.status) == (H, "jane.doe@customer.example.org",
                                                              "5.1.1")


def test_dsn_details() -> None:
    """A DSN's action, diagnostic (unfolded, without its 'smtp;' type) and original
    recipient are kept."""
    (report,) = parse_report((CORPUS / "postfix-dsn-hard.eml").read_bytes())
    assert report.action == "failed"
    assert report.diagnostic == ("550 5.1.1 <jane.doe@customer.example.org>: Recipient "
                                 "address rejected: User unknown in virtual mailbox table")
    assert report.original_recipient == "jane.doe@customer.example.org"


def test_arf_details() -> None:
    """An ARF report keeps its feedback type and the original recipient."""
    (report,) = parse_report((CORPUS / "arf-yahoo.eml").read_bytes())
    assert (report.feedback_type, report.original_recipient) == ("abuse", "reader.one@yahoo.com")


def test_envelope_recipient_wins_over_headers() -> None:
    """The RCPT TO the listener saw is the return path, whatever the headers say."""
    other = "bounces+abcdefgh@bounce.example.com"
    (report,) = parse_report((CORPUS / "postfix-dsn-hard.eml").read_bytes(),
                             envelope_recipient=other)
    assert report.return_path == other


def test_complaint_to_abuse_address_takes_return_path_from_report() -> None:
    """A complaint sent to abuse@ still finds our return path in Original-Mail-From or the
    original's Return-Path."""
    (report,) = parse_report((CORPUS / "arf-aol-redacted.eml").read_bytes(),
                             envelope_recipient="abuse@bounce.example.com")
    assert parse_return_path(report.return_path, SECRET, DOMAIN) == (777, 1)


def _message(body: bytes, headers: bytes = b"") -> bytes:
    return (b"From: MAILER-DAEMON@relay.example.net\r\nTo: bounces+x@bounce.example.com\r\n"
            b"Subject: Undelivered Mail Returned to Sender\r\n" + headers + b"\r\n" + body)


@pytest.mark.parametrize(("text", "kind", "recipient", "status"), [
    (b"<a@x.org>: host mx[192.0.2.1] said: 550 5.1.1 no such user", H, "a@x.org", "5.1.1"),
    (b"<a@x.org>: host mx said: 554 Transaction failed", H, "a@x.org", ""),
    (b"<a@x.org>: connect to mx.x.org[192.0.2.4]:25: 421 4.7.0 try later", S, "a@x.org",
     "4.7.0"),
    # an IP address, a version number or a date is not a status code
    (b"<a@x.org>: host 10.5.1.1 (Exim 4.5.1.2) on 5.1.2027: permanent error", H, "a@x.org",
     ""),
    (b"<a@x.org>: mailbox full, will retry", S, "a@x.org", ""),
    (b"Sorry, something happened.", U, "", ""),
])
def test_plain_text_rules(text: bytes, kind: BounceKind, recipient: str, status: str) -> None:
    """Codes in the text decide; an IP, version or date does not count as one; without a
    code the wording decides; with nothing to go on the report is unknown."""
    (report,) = parse_report(_message(text))
    assert (report.kind, report.recipient, report.status) == (kind, recipient, status)


def test_text_after_the_original_marker_is_not_read() -> None:
    """Codes inside the copy of the original message are not the bounce's own."""
    body = (b"<a@x.org>: delivery delayed, will retry\r\n\r\n"
            b"--- Below this line is a copy of the message.\r\n\r\n"
            b"To: a@x.org\r\n\r\nreply 550 5.1.1 if you dare\r\n")
    (report,) = parse_report(_message(body))
    assert (report.kind, report.status) == (S, "")


def test_auto_submitted_bounce_from_daemon_is_still_a_bounce() -> None:
    """Postfix marks its bounces Auto-Submitted: they are read as bounces, not auto-replies."""
    (report,) = parse_report(_message(b"<a@x.org>: 550 5.1.1 unknown",
                                      b"Auto-Submitted: auto-replied\r\n"))
    assert report.kind is H


def test_ordinary_mail_is_unknown() -> None:
    """A message that is no report of any kind gives one unknown report."""
    raw = b"From: someone@x.org\r\nTo: postmaster@bounce.example.com\r\nSubject: hi\r\n\r\n550?"
    (report,) = parse_report(raw)
    assert (report.kind, report.source) == (U, "other")


# ------------------------------------------------------------------ hostile input

def test_size_limit_is_checked_before_parsing() -> None:
    """Over the limit: ReportTooLarge, immediately, whatever the content."""
    raw = b"Subject: x\r\n\r\n" + b"a" * 2000
    with pytest.raises(ReportTooLarge):
        parse_report(raw, max_bytes=1000)
    big = b"Subject: x\r\n\r\n" + b"5.1.1 " * (21 * 1024 * 1024 // 6)
    with pytest.raises(ReportTooLarge):
        parse_report(big)
    (report,) = read_reports(big)
    assert report.kind is BounceKind.UNPARSEABLE and "over the limit" in report.diagnostic


@pytest.mark.parametrize(("raw", "why"), [
    (b"", "empty"),
    (b"   \r\n\r\n", "empty"),
    (b"\x00\x01\x02\xff\xfe binary junk without any header", "header"),
    ((b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n") * 5000, "nested"),
    (b"From: x\r\n" + b"Content-Type: message/rfc822\r\n\r\n" * 3000, "nested"),
    ((CORPUS / "malformed-mime.eml").read_bytes(), "malformed"),
])
def test_unreadable_messages(raw: bytes, why: str) -> None:
    """Empty, headerless, too deeply nested or structurally broken input: our ClientError
    (UnreadableReport), and read_reports turns it into one unparseable report."""
    with pytest.raises(UnreadableReport) as info:
        parse_report(raw)
    assert isinstance(info.value, ClientError)
    assert why in info.value.message
    (report,) = read_reports(raw, envelope_recipient="bounces+q@bounce.example.com")
    assert report.kind is BounceKind.UNPARSEABLE
    assert report.return_path == "bounces+q@bounce.example.com"
    assert why in report.diagnostic


def test_many_recipients_are_capped() -> None:
    """A DSN naming 10,000 recipients yields at most 100 reports."""
    blocks = b"".join(b"Final-Recipient: rfc822; u%d@x.org\r\nAction: failed\r\n"
                      b"Status: 5.1.1\r\n\r\n" % i for i in range(10000))
    raw = (b"From: MAILER-DAEMON@x\r\nContent-Type: multipart/report; boundary=B\r\n\r\n"
           b"--B\r\nContent-Type: message/delivery-status\r\n\r\n" + blocks + b"--B--\r\n")
    reports = parse_report(raw)
    assert 1 <= len(reports) <= 100
    assert all(r.kind is H for r in reports)


@pytest.mark.timeout(120)  # a hang guard: quadratic scanning of this input takes hours
def test_hostile_text_stays_linear() -> None:
    """Long runs that make naive address / code patterns backtrack are read in linear time."""
    body = b"a" * 400_000 + b"@" + b"5." * 100_000 + b"\r\n" + b"<x@" * 50_000
    reports = parse_report(_message(body))
    assert len(reports) >= 1


def test_control_characters_and_huge_headers_are_cleaned() -> None:
    """NULs, control characters and lone surrogates never reach a report; fields are
    bounded."""
    raw = (b"From: MAILER-DAEMON@x.org\r\nSubject: Undelivered \x00\x07" + b"s" * 100_000 +
           b"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           b"<a@x.org>: 550 5.1.1 bad \xed\xa0\x80 \x00 user " + b"d" * 10_000 + b"\r\n")
    (report,) = parse_report(raw)
    assert report.kind is H
    assert len(report.diagnostic) <= 1000
    for value in (report.diagnostic, report.recipient):
        assert "\x00" not in value and "\x07" not in value
        value.encode("utf-8")  # no lone surrogate: encodable for the database


@pytest.mark.parametrize("seed", range(30))
def test_mutated_corpus_never_raises_anything_else(seed: int) -> None:
    """Random byte damage to real bounces gives reports or UnreadableReport, never another
    exception."""
    import random

    rng = random.Random(seed)
    files = sorted(CORPUS.glob("*.eml"))
    raw = bytearray(files[seed % len(files)].read_bytes())
    for _ in range(rng.randint(1, 40)):
        op = rng.randrange(3)
        pos = rng.randrange(len(raw))
        if op == 0:
            raw[pos] = rng.randrange(256)
        elif op == 1:
            del raw[pos:pos + rng.randint(1, 200)]
        else:
            raw[pos:pos] = rng.choice([b"\r\n--", b"\r\n\r\n", b"=?utf-8?b?", b"; boundary=",
                                       b"Content-Type: multipart/mixed\r\n", b"\xff\xfe"])
    try:
        reports = parse_report(bytes(raw))
    except UnreadableReport:
        return
    assert reports


def test_recipient_named_only_by_display_name_comes_from_the_original() -> None:
    """An old Exchange NDR that names the recipient by display name only: the address is
    taken from the attached original's To:, the code from the text."""
    raw = (b"From: System Administrator <postmaster@corp.example.com>\r\n"
           b"Subject: Undeliverable: Hello\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=NDR\r\n\r\n--NDR\r\n"
           b"Content-Type: text/plain\r\n\r\n"
           b"Your message did not reach some or all of the intended recipients.\r\n\r\n"
           b"      John Doe on 12/11/2026 13:05\r\n"
           b"            <mail.corp.example.com #5.1.1>\r\n\r\n--NDR\r\n"
           b"Content-Type: message/rfc822\r\n\r\n"
           b"From: orders@shop.example.com\r\nTo: John Doe <John.Doe@corp.example.com>\r\n"
           b"Message-ID: <x1@shop.example.com>\r\n\r\nhi\r\n--NDR--\r\n")
    (report,) = parse_report(raw)
    assert (report.kind, report.recipient, report.status, report.message_id) == (
        H, "john.doe@corp.example.com", "5.1.1", "x1@shop.example.com")

"""Provider bounce webhooks: SES through SNS (signatures checked against certificates served
over real HTTPS on loopback) and Postmark (Basic credentials or a shared header secret)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from soap_service.bounces.providers import CallbackReader, callback_reader
from soap_service.bounces.sns import SnsVerifier
from soap_service.bounces.verp import parse_return_path
from soap_service.config import load_settings
from soap_service.errors import (
    ClientError,
    NotFound,
    ServerError,
    UnreadableReport,
    UnverifiedCallback,
)
from soap_service.models import BounceKind
from tests.integration.sns_support import (
    TOPIC,
    CertHost,
    Pki,
    cert_host,
    make_pki,
    notification,
    sign,
)

RETURN_PATH = "bounces+siqqd6n3hqebvcct5g6i4@bounce.example.com"  # event 4242, attempt 1
SES_BOUNCE = {
    "notificationType": "Bounce",
    "bounce": {
        "bounceType": "Permanent", "bounceSubType": "General",
        "bouncedRecipients": [
            {"emailAddress": "Jane.Doe@customer.example.org", "action": "failed",
             "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"},
            {"emailAddress": "gone@customer.example.org"},
        ],
        "timestamp": "2026-11-12T10:14:59.000Z",
        "feedbackId": "0102019a-aaaa-bbbb-cccc-ddddeeeeffff-000000",
        "reportingMTA": "dsn; a8-1.smtp-out.eu-west-1.amazonses.com",
    },
    "mail": {
        "timestamp": "2026-11-12T10:14:50.000Z", "source": RETURN_PATH,
        "sourceArn": "arn:aws:ses:eu-west-1:123456789012:identity/bounce.example.com",
        "messageId": "0102019a1b2c3d4e-5f6a7b8c-0000-4000-8000-000000000000-000000",
        "destination": ["Jane.Doe@customer.example.org", "gone@customer.example.org"],
        "headersTruncated": False,
        "headers": [{"name": "From", "value": "Example Shop <orders@shop.example.com>"},
                    {"name": "Message-ID",
                     "value": "<6f1c2e0a-3b7d-4c1e-9a55-0d2b8c4e7f10@shop.example.com>"}],
        "commonHeaders": {"from": ["Example Shop <orders@shop.example.com>"],
                          "subject": "Your order"},
    },
}
SES_TRANSIENT = {"eventType": "Bounce", "bounce": {
    "bounceType": "Transient", "bounceSubType": "MailboxFull",
    "bouncedRecipients": [{"emailAddress": "full@mailbox.example.com"}]},
    "mail": {"messageId": "m-2", "source": "orders@shop.example.com"}}
SES_UNDETERMINED = {"notificationType": "Bounce", "bounce": {
    "bounceType": "Undetermined", "bouncedRecipients": [{"emailAddress": "u@x.org"}]},
    "mail": {"messageId": "m-3"}}
SES_COMPLAINT = {
    "notificationType": "Complaint",
    "complaint": {"complainedRecipients": [{"emailAddress": "reader@yahoo.com"}],
                  "complaintFeedbackType": "abuse", "userAgent": "Yahoo!-Mail-Feedback/2.0",
                  "timestamp": "2026-11-12T17:20:04.000Z",
                  "feedbackId": "0102019a-ffff-0000-1111-222233334444-000000"},
    "mail": {"messageId": "m-4", "source": RETURN_PATH,
             "commonHeaders": {"messageId": "<abc@shop.example.com>"}},
}
SES_DELIVERY = {"notificationType": "Delivery", "delivery": {"recipients": ["a@x.org"]},
                "mail": {"messageId": "m-5"}}


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture()
def host(pki: Pki, tmp_path: Path) -> Iterator[CertHost]:
    with cert_host(pki, tmp_path) as running:
        yield running


@pytest.fixture()
def verifier(pki: Pki, host: CertHost) -> SnsVerifier:
    return SnsVerifier([TOPIC], r"https://127\.0\.0\.1:\d+", timeout=5,
                       ssl_context=pki.client_context())


def _body(message: dict[str, str]) -> bytes:
    return json.dumps(message).encode()


def _reader(verifier: SnsVerifier) -> CallbackReader:
    return CallbackReader(verifier, "postmark", "hook-pass", "")


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("subject", [None, "Amazon SES Email Event Notification"])
def test_ses_bounce_verified_in_both_signature_versions(
        pki: Pki, host: CertHost, verifier: SnsVerifier, version: str,
        subject: str | None) -> None:
    """A Permanent bounce, signed SHA1withRSA or SHA256withRSA (with or without a Subject),
    gives one hard report per bounced recipient, matched by our return path."""
    message = sign(notification(SES_BOUNCE, host.url("/SimpleNotificationService-good.pem"),
                                subject), pki.signing_key, version)
    outcome = _reader(verifier).read("ses", _body(message), {})
    assert outcome.notification_id == message["MessageId"]
    assert [(r.kind, r.recipient, r.status, r.source) for r in outcome.reports] == [
        (BounceKind.HARD, "jane.doe@customer.example.org", "5.1.1", "ses"),
        (BounceKind.HARD, "gone@customer.example.org", "", "ses")]
    first = outcome.reports[0]
    assert parse_return_path(first.return_path, "fixture-secret", "bounce.example.com") == (
        4242, 1)
    assert first.message_id == "6f1c2e0a-3b7d-4c1e-9a55-0d2b8c4e7f10@shop.example.com"
    assert first.provider_id.startswith("0102019a1b2c3d4e")
    assert first.diagnostic == "smtp; 550 5.1.1 user unknown"
    assert first.reported_at is not None and first.reported_at.year == 2026


@pytest.mark.parametrize(("ses", "expected"), [
    (SES_TRANSIENT, [(BounceKind.SOFT, "full@mailbox.example.com")]),
    (SES_UNDETERMINED, [(BounceKind.UNKNOWN, "u@x.org")]),
    (SES_COMPLAINT, [(BounceKind.COMPLAINT, "reader@yahoo.com")]),
    (SES_DELIVERY, []),
])
def test_ses_notification_kinds(pki: Pki, host: CertHost, verifier: SnsVerifier,
                                ses: dict[str, object], expected: list[object]) -> None:
    """Transient → soft, Undetermined → unknown, Complaint → complaint, Delivery → none."""
    message = sign(notification(ses, host.url("/SimpleNotificationService-good.pem")),
                   pki.signing_key, "2")
    outcome = _reader(verifier).read("ses", _body(message), {})
    assert [(r.kind, r.recipient) for r in outcome.reports] == expected
    if ses is SES_COMPLAINT:
        (report,) = outcome.reports
        assert (report.feedback_type, report.message_id) == ("abuse", "abc@shop.example.com")
    if not expected:
        assert outcome.note == "Delivery notification"


def test_certificate_is_fetched_once(pki: Pki, host: CertHost, verifier: SnsVerifier) -> None:
    """Three messages signed with one certificate cost one fetch."""
    url = host.url("/SimpleNotificationService-good.pem")
    for n in range(3):
        message = sign(notification(SES_BOUNCE, url, message_id=f"id-{n}"), pki.signing_key)
        verifier.verify(_body(message))
    assert host.hits.count("/SimpleNotificationService-good.pem") == 1
    assert verifier.fetches == 1


def test_subscription_confirmation(pki: Pki, host: CertHost, verifier: SnsVerifier) -> None:
    """A verified SubscriptionConfirmation returns the URL to visit; confirm() visits it."""
    message = sign({
        "Type": "SubscriptionConfirmation", "MessageId": "sub-1", "Token": "2336412f37fb",
        "TopicArn": TOPIC, "Message": "You have chosen to subscribe to the topic...",
        "SubscribeURL": host.url("/confirm?Action=ConfirmSubscription&Token=2336412f37fb"),
        "Timestamp": "2026-11-12T10:00:00.000Z",
        "SigningCertURL": host.url("/SimpleNotificationService-good.pem")}, pki.signing_key)
    outcome = _reader(verifier).read("ses", _body(message), {})
    assert outcome.reports == ()
    assert outcome.confirm_url.endswith("Token=2336412f37fb")
    assert "/confirm" not in "".join(host.hits)  # reading never visits it by itself
    assert verifier.confirm(outcome.confirm_url) == 200
    assert any(h.startswith("/confirm?") for h in host.hits)


def _tamper(message: dict[str, str]) -> dict[str, str]:
    changed = json.loads(message["Message"])
    changed["bounce"]["bouncedRecipients"][0]["emailAddress"] = "victim@example.com"
    return dict(message, Message=json.dumps(changed))


@pytest.mark.parametrize(("case", "error"), [
    ("forged signature", UnverifiedCallback),
    ("tampered message", UnverifiedCallback),
    ("tampered timestamp", UnverifiedCallback),
    ("subject added", UnverifiedCallback),
    ("wrong cert host", UnverifiedCallback),
    ("plain http", UnverifiedCallback),
    ("credentials in url", UnverifiedCallback),
    ("not a .pem", UnverifiedCallback),
    ("expired certificate", UnverifiedCallback),
    ("junk certificate", UnverifiedCallback),
    ("redirecting host", UnverifiedCallback),
    ("other topic", UnverifiedCallback),
    ("signature version 3", UnverifiedCallback),
    ("signature not base64", UnverifiedCallback),
    ("unknown type", UnverifiedCallback),
    ("missing certificate", ServerError),
])
def test_unverifiable_sns_messages(pki: Pki, host: CertHost, verifier: SnsVerifier,
                                   case: str, error: type[Exception]) -> None:
    """Every forged, altered or unverifiable message is refused; an unreachable certificate
    is our problem (5xx, SNS retries), not the caller's."""
    good = host.url("/SimpleNotificationService-good.pem")
    port = host.base.rsplit(":", 1)[1]
    key, url, version, after = pki.signing_key, good, "1", None
    topic, mtype = TOPIC, "Notification"
    if case == "forged signature":
        key = pki.other_key
    elif case == "tampered message":
        after = _tamper
    elif case == "tampered timestamp":
        def after(m: dict[str, str]) -> dict[str, str]:
            return dict(m, Timestamp="2026-11-12T10:15:01.123Z")
    elif case == "subject added":
        def after(m: dict[str, str]) -> dict[str, str]:
            return dict(m, Subject="injected")
    elif case == "wrong cert host":
        url = f"https://localhost:{port}/SimpleNotificationService-good.pem"
    elif case == "plain http":
        url = f"http://127.0.0.1:{port}/SimpleNotificationService-good.pem"
    elif case == "credentials in url":
        url = f"https://u:p@127.0.0.1:{port}/SimpleNotificationService-good.pem"
    elif case == "not a .pem":
        url = host.url("/confirm")
    elif case == "expired certificate":
        key, url = pki.expired_key, host.url("/SimpleNotificationService-expired.pem")
    elif case == "junk certificate":
        url = host.url("/junk.pem")
    elif case == "redirecting host":
        url = host.url("/moved.pem")
    elif case == "other topic":
        topic = "arn:aws:sns:eu-west-1:999999999999:attacker-topic"
    elif case == "signature version 3":
        version = "3"
    elif case == "missing certificate":
        url = host.url("/missing.pem")
    message = notification(SES_BOUNCE, url)
    message["TopicArn"] = topic
    if case == "unknown type":
        mtype = "Broadcast"
    message["Type"] = mtype
    if version == "3" or mtype != "Notification":
        message.update(SignatureVersion=version, Signature="AAAA")
    else:
        message = sign(message, key, version)
    if case == "signature not base64":
        message["Signature"] = "not base64!!"
    if after is not None:
        message = after(message)
    with pytest.raises(error):
        _reader(verifier).read("ses", _body(message), {})
    if case in {"wrong cert host", "plain http", "credentials in url", "other topic"}:
        assert host.hits == []  # refused before anything was fetched


def test_default_origin_is_amazon_over_https() -> None:
    """Out of the box only https://sns.<region>.amazonaws.com certificate URLs are fetched."""
    v = SnsVerifier([TOPIC])
    assert v.url_allowed("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-a.pem",
                         certificate=True)
    assert v.url_allowed("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-a.pem",
                         certificate=True)
    for url in ("http://sns.us-east-1.amazonaws.com/x.pem",
                "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
                "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
                "https://sns.us-east-1.amazonaws.com@evil.example/x.pem",
                "https://s3.amazonaws.com/x.pem",
                "https://sns.us-east-1.amazonaws.com/x.pem?redirect=1"):
        assert not v.url_allowed(url, certificate=True), url


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'{"Type": 3}',
                                  b"{" * 100_000, b'{"a": "' + b"x" * 600_000 + b'"}'])
def test_unreadable_sns_bodies(verifier: SnsVerifier, body: bytes) -> None:
    """Bodies that are not an SNS JSON object are a 4xx (UnreadableReport), never a crash."""
    with pytest.raises(UnreadableReport):
        _reader(verifier).read("ses", body, {})


def test_no_topics_configured_refuses_everything(pki: Pki, host: CertHost) -> None:
    """With MC_SNS_TOPIC_ARNS empty (the default) no SNS message is accepted."""
    reader = callback_reader(load_settings({}, sns_origin_pattern=r"https://127\.0\.0\.1:\d+"))
    message = sign(notification(SES_BOUNCE, host.url("/SimpleNotificationService-good.pem")),
                   pki.signing_key)
    with pytest.raises(UnverifiedCallback):
        reader.read("ses", _body(message), {})


# ------------------------------------------------------------------ Postmark

POSTMARK_BOUNCE = {
    "RecordType": "Bounce", "MessageStream": "outbound", "ID": 4323372036854775807,
    "Type": "HardBounce", "TypeCode": 1, "Name": "Hard bounce", "Tag": "order",
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "Metadata": {"mc-return-path": RETURN_PATH}, "ServerID": 23,
    "Description": "The server was unable to deliver your message (ex: unknown user, "
                   "mailbox not found).",
    "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
    "Email": "John@example.com", "From": "orders@shop.example.com",
    "BouncedAt": "2026-11-12T10:14:59.0000000-05:00", "DumpAvailable": True,
    "Inactive": True, "CanActivate": True, "Subject": "Your order",
}


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.mark.parametrize(("changes", "expected"), [
    ({}, (BounceKind.HARD, "5.1.1")),
    ({"Type": "SoftBounce", "TypeCode": 4096, "Details": "mailbox full"}, (BounceKind.SOFT, "")),
    ({"Type": "Transient", "TypeCode": 2}, (BounceKind.SOFT, "5.1.1")),
    ({"Type": "AutoResponder", "TypeCode": 64}, (BounceKind.UNKNOWN, "5.1.1")),
    ({"Type": "DMARCPolicy", "TypeCode": 100009}, (BounceKind.UNKNOWN, "5.1.1")),
    ({"RecordType": "SpamComplaint", "Type": "SpamComplaint", "TypeCode": 100001,
      "Details": ""}, (BounceKind.COMPLAINT, "")),
])
def test_postmark_payloads(changes: dict[str, object], expected: tuple[BounceKind, str]) -> None:
    """Postmark's Type decides the kind; Details' status code and the metadata's return
    path are kept."""
    reader = CallbackReader(SnsVerifier([]), "postmark", "hook-pass", "")
    body = json.dumps(dict(POSTMARK_BOUNCE, **changes)).encode()
    outcome = reader.read("postmark", body, _basic("postmark", "hook-pass"))
    (report,) = outcome.reports
    assert (report.kind, report.status) == expected
    assert (report.recipient, report.source) == ("john@example.com", "postmark")
    assert report.provider_id == "883953f4-6105-42a2-a16a-77a8eac79483"
    assert report.return_path == RETURN_PATH
    assert outcome.notification_id == "postmark:4323372036854775807"


def test_postmark_other_records_give_nothing() -> None:
    """Delivery / Open / Click records are accepted and ignored."""
    reader = CallbackReader(SnsVerifier([]), "", "", "s3cr3t-token")
    outcome = reader.read("postmark", json.dumps({"RecordType": "Delivery"}).encode(),
                          {"x-mc-webhook-token": "s3cr3t-token"})
    assert (outcome.reports, outcome.note) == ((), "Delivery record")


@pytest.mark.parametrize(("configured", "headers"), [
    (("postmark", "hook-pass", ""), {}),
    (("postmark", "hook-pass", ""), _basic("postmark", "wrong")),
    (("postmark", "hook-pass", ""), _basic("other", "hook-pass")),
    (("postmark", "hook-pass", ""), {"Authorization": "Basic !!notbase64"}),
    (("postmark", "hook-pass", ""), {"Authorization": "Bearer hook-pass"}),
    (("", "", "s3cr3t-token"), {"X-MC-Webhook-Token": "s3cr3t-tokeN"}),
    (("", "", "s3cr3t-token"), _basic("postmark", "s3cr3t-token")),
    (("", "", ""), _basic("", "")),  # nothing configured: nothing accepted
    (("", "", ""), {"X-MC-Webhook-Token": ""}),
])
def test_postmark_unauthenticated(configured: tuple[str, str, str],
                                  headers: dict[str, str]) -> None:
    """Missing or wrong credentials are refused before the body is read."""
    reader = CallbackReader(SnsVerifier([]), *configured)
    with pytest.raises(UnverifiedCallback) as info:
        reader.read("postmark", json.dumps(POSTMARK_BOUNCE).encode(), headers)
    assert isinstance(info.value, ClientError)


@pytest.mark.parametrize("body", [b"", b"{", b'"a string"', b"[" * 50_000])
def test_postmark_unreadable(body: bytes) -> None:
    """An authenticated call with a body that is not a JSON object is a 4xx."""
    reader = CallbackReader(SnsVerifier([]), "", "", "tok")
    with pytest.raises(UnreadableReport):
        reader.read("postmark", body, {"X-MC-Webhook-Token": "tok"})


def test_unknown_provider() -> None:
    """A provider name we do not know is NotFound (a 404 at the route)."""
    with pytest.raises(NotFound):
        CallbackReader(SnsVerifier([])).read("sendgrid", b"{}", {})

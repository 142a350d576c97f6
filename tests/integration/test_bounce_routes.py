"""``POST /callbacks/bounces/{provider}`` on a running ``msgcenter serve``: SES through SNS
(signed with a locally generated certificate served over local HTTPS) and Postmark; a
forged signature, wrong credentials, an unknown provider change nothing."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from bounce_support import DOMAIN, send
from sns_support import TOPIC, CertHost, Pki, _pem, cert_host, make_pki, notification, sign

from soap_service import exclusions
from soap_service.models import EventStatus
from soap_service.store import bounces as bounce_store
from soap_service.store.events import get_event

SECRET = "route-test-secret"
TOKEN = "pm-hook-token-0123456789"


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture()
def host(pki: Pki, tmp_path: Path) -> Iterator[CertHost]:
    with cert_host(pki, tmp_path) as running:
        yield running


@pytest.fixture()
def bsettings(settings):
    return settings.replace(bounce_domain=DOMAIN, secret=SECRET)


@pytest.fixture()
def server(db, database_url, start_server, pki: Pki, host: CertHost, tmp_path: Path):
    ca = tmp_path / "sns-ca.pem"
    ca.write_bytes(_pem(pki.ca))
    return start_server(database_url, init=False, env={
        "MC_SECRET": SECRET, "MC_BOUNCE_DOMAIN": DOMAIN, "MC_SNS_TOPIC_ARNS": TOPIC,
        "MC_SNS_ORIGIN_PATTERN": r"https://127\.0\.0\.1:\d+", "SSL_CERT_FILE": str(ca),
        "MC_POSTMARK_WEBHOOK_TOKEN": TOKEN}, worker=False)


def _ses_bounce(return_path: str, address: str, bounce_type: str = "Permanent") -> dict:
    return {
        "notificationType": "Bounce",
        "bounce": {"bounceType": bounce_type, "bounceSubType": "General",
                   "bouncedRecipients": [{"emailAddress": address, "action": "failed",
                                          "status": "5.1.1",
                                          "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
                   "timestamp": "2026-11-30T09:00:00.000Z", "feedbackId": "0100-fb"},
        "mail": {"timestamp": "2026-11-30T08:59:00.000Z", "source": return_path,
                 "messageId": "0102019a-ses-id", "destination": [address]},
    }


def _post(server, provider: str, body: bytes, headers: dict[str, str] | None = None):
    return httpx.post(f"{server.url}/callbacks/bounces/{provider}", content=body,
                      headers={"Content-Type": "application/json", **(headers or {})},
                      timeout=30)


def test_ses_bounce_through_sns(db, bsettings, server, pki: Pki, host: CertHost):
    """A verified SES Permanent bounce: 200, the event deliveryFailed, the address
    quarantined; SNS redelivering it changes nothing more."""
    pk, mail_from = send(db, bsettings, ["ses-gone@example.net"])["ses-gone@example.net"]
    cert = host.url("/SimpleNotificationService-good.pem")
    body = json.dumps(sign(notification(_ses_bounce(mail_from, "ses-gone@example.net"), cert),
                           pki.signing_key, "2")).encode()
    resp = _post(server, "ses", body)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"received": 1, "matched": 1}
    assert get_event(db, pk).status is EventStatus.DELIVERY_FAILED
    entry = exclusions.lookup(db, "ses-gone@example.net")
    assert entry is not None and entry.source == "bounce"
    again = _post(server, "ses", body)
    assert again.status_code == 200
    [row] = bounce_store.list_bounces(db)
    assert (row.source, row.kind, row.event_id) == ("ses", "hard", pk)


def test_unverifiable_ses_changes_nothing(db, bsettings, server, pki: Pki, host: CertHost):
    """Signed with another key, a tampered message, an unlisted topic, a certificate on a
    host not allowed, an unknown provider: a 4xx problem, nothing recorded or listed."""
    pk, mail_from = send(db, bsettings, ["ses-victim@example.net"])["ses-victim@example.net"]
    cert = host.url("/SimpleNotificationService-good.pem")
    ses = _ses_bounce(mail_from, "ses-victim@example.net")
    forged = sign(notification(ses, cert), pki.other_key)
    tampered = sign(notification(ses, cert), pki.signing_key)
    tampered["Message"] = tampered["Message"].replace("ses-victim", "someone-else")
    topic = sign(dict(notification(ses, cert), TopicArn="arn:aws:sns:eu-west-1:1:other"),
                 pki.signing_key)
    elsewhere = sign(notification(ses, "https://sns.example.invalid/x.pem"), pki.signing_key)
    for message in (forged, tampered, topic, elsewhere):
        resp = _post(server, "ses", json.dumps(message).encode())
        assert resp.status_code == 403, resp.text
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert resp.json()["status"] == 403
    for body in (b"{", b"[]", b"x" * 600_000):
        resp = _post(server, "ses", body)
        assert resp.status_code in {400, 413}, resp.text
        assert resp.headers["content-type"].startswith("application/problem+json")
    resp = _post(server, "sendgrid", b"{}")
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert bounce_store.list_bounces(db) == []
    assert get_event(db, pk).status is EventStatus.PROCESSED
    assert exclusions.lookup(db, "ses-victim@example.net") is None


def test_postmark_bounce_and_complaint(db, bsettings, server):
    """Postmark calls with the secret header: a HardBounce quarantines (matched by the
    return path in its metadata), a SpamComplaint denylists (matched by our Message-ID);
    without or with a wrong token: 403, nothing changes."""
    sent = send(db, bsettings, ["pm-gone@example.net", "pm-angry@example.net"])
    gone_pk, gone_from = sent["pm-gone@example.net"]
    angry_pk, angry_from = sent["pm-angry@example.net"]
    bounce = {"RecordType": "Bounce", "ID": 4323372036854775807, "Type": "HardBounce",
              "TypeCode": 1, "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
              "Metadata": {"mc-return-path": gone_from}, "Email": "pm-gone@example.net",
              "Details": "smtp;550 5.1.1 The email account does not exist.",
              "BouncedAt": "2026-11-30T09:00:00Z"}
    body = json.dumps(bounce).encode()
    for headers in ({}, {"X-MC-Webhook-Token": "wrong"},
                    {"Authorization": "Basic " + base64.b64encode(b"a:b").decode()}):
        resp = _post(server, "postmark", body, headers)
        assert resp.status_code == 403
        assert resp.headers["content-type"].startswith("application/problem+json")
    assert bounce_store.list_bounces(db) == []
    resp = _post(server, "postmark", body, {"X-MC-Webhook-Token": TOKEN})
    assert resp.status_code == 200 and resp.json() == {"received": 1, "matched": 1}
    assert get_event(db, gone_pk).status is EventStatus.DELIVERY_FAILED
    assert exclusions.lookup(db, "pm-gone@example.net").source == "bounce"
    complaint = {"RecordType": "SpamComplaint", "ID": 42, "Type": "SpamComplaint",
                 "TypeCode": 100001, "MessageID": "aa-bb", "Email": "pm-angry@example.net",
                 "Metadata": {"mc-return-path": angry_from},
                 "BouncedAt": "2026-11-30T09:01:00Z", "Subject": "Order"}
    resp = _post(server, "postmark", json.dumps(complaint).encode(),
                 {"X-MC-Webhook-Token": TOKEN})
    assert resp.status_code == 200, resp.text
    entry = exclusions.lookup(db, "pm-angry@example.net")
    assert entry is not None and entry.source == "complaint", bounce_store.list_bounces(db)
    assert get_event(db, angry_pk).status is EventStatus.PROCESSED


def test_sns_subscription_is_confirmed(db, server, pki: Pki, host: CertHost):
    """A verified SubscriptionConfirmation: the server visits its SubscribeURL (on the
    allowed origin) and answers 200 with nothing recorded; a forged one is not visited."""
    confirm = host.url("/confirm?Action=ConfirmSubscription&Token=2336412f37fb")
    message = {
        "Type": "SubscriptionConfirmation", "MessageId": "sub-1", "Token": "2336412f37fb",
        "TopicArn": TOPIC, "Message": "You have chosen to subscribe to the topic...",
        "SubscribeURL": confirm, "Timestamp": "2026-11-30T09:00:00.000Z",
        "SigningCertURL": host.url("/SimpleNotificationService-good.pem")}
    forged = _post(server, "ses", json.dumps(sign(message, pki.other_key)).encode())
    assert forged.status_code == 403
    assert not any(h.startswith("/confirm") for h in host.hits)
    resp = _post(server, "ses", json.dumps(sign(message, pki.signing_key)).encode())
    assert resp.status_code == 200 and resp.json() == {"received": 0, "matched": 0}
    assert any(h.startswith("/confirm?Action=ConfirmSubscription") for h in host.hits)
    assert bounce_store.list_bounces(db) == []

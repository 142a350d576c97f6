"""Webhooks across process deaths, and from a REST push to a signed "processed" webhook.

A worker SIGKILLed after the status change but before the send loses nothing: the
outbox row is there and the next worker delivers it.  A worker SIGKILLed in the middle
of a send leaves its delivery leased; after the lease another worker sends it again
with the same webhook-id (receivers see each id at least once).  Real ``msgcenter
worker`` / ``serve`` processes, a real receiver verifying with ``standardwebhooks``.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, msgcenter_cmd
from dispatch_support import add_events, event_row, wait_until
from rest_support import rest_stack
from webhook_support import Receiver

from soap_service import demo, webhooks
from soap_service.devsmtp import MailSink
from soap_service.store import events as event_store
from soap_service.store import webhooks as store


def start_worker(tmp_path: Path, settings, name: str, **env: str) -> subprocess.Popen:
    full = {"MC_DATABASE_URL": settings.database_url, "MC_SQLITE_SYNCHRONOUS": "normal",
            "PYTHONUNBUFFERED": "1", "MC_WEBHOOK_POLL_INTERVAL": "0.2",
            "MC_WEBHOOK_RETRY_SCHEDULE": "0.2s,0.2s,0.2s", **env}
    with (tmp_path / f"{name}.log").open("wb") as out:
        return subprocess.Popen(msgcenter_cmd("-v", "worker"), cwd=str(ROOT),
                                env={**os.environ, **full}, stdout=out,
                                stderr=subprocess.STDOUT)


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            kill(proc)


def test_sigkill_between_change_and_send_loses_nothing(db, settings, tmp_path):
    """Worker A (delivering no webhooks) records routingFailed with its outbox row and is
    SIGKILLed; nothing was sent.  Worker B starts and the receiver gets the webhook."""
    with Receiver() as receiver:
        endpoint = webhooks.add_endpoint(db, receiver.url)
        receiver.secret = endpoint.secret
        (pk,) = add_events(db, [event_row(event_type="no_template_for_this")])
        a = start_worker(tmp_path, settings, "a", MC_WEBHOOK_POLL_INTERVAL="0")
        try:
            wait_until(lambda: event_store.get_event(db, pk).status.value == "routingFailed"
                       and store.outbox_size(db) == 1, 60, "the status change")
        finally:
            kill(a)
        assert receiver.received == []
        b = start_worker(tmp_path, settings, "b")
        try:
            got = receiver.wait_for(lambda seen: len(seen) >= 1, what="the webhook")
        finally:
            stop(b)
        assert got[0].error == "" and got[0].payload["type"] == "routingFailed"
        (delivery,) = store.list_deliveries(db)
        assert delivery.status == "delivered" and store.outbox_size(db) == 0


def test_sigkill_mid_send_is_sent_again_after_the_lease(db, settings, tmp_path):
    """The receiver holds worker A's request; A is SIGKILLed mid-send.  Worker B sends the
    delivery again once A's lease is over: same webhook-id, verified, delivered."""
    with Receiver() as receiver:
        endpoint = webhooks.add_endpoint(db, receiver.url)
        receiver.secret = endpoint.secret
        receiver.answer((200, 120.0))
        add_events(db, [event_row(event_type="no_template_for_this")])
        env = {"MC_WEBHOOK_TIMEOUT": "3"}  # lease = 2 x timeout + 10 s
        a = start_worker(tmp_path, settings, "a", **env)
        try:
            receiver.wait_for(lambda seen: len(seen) >= 1, what="the first send")
        finally:
            kill(a)
        (held,) = store.list_deliveries(db)
        assert held.status == "pending"
        b = start_worker(tmp_path, settings, "b", **env)
        try:
            seen = receiver.wait_for(lambda s: len(s) >= 2, timeout=90, what="the resend")
            wait_until(lambda: store.list_deliveries(db)[0].status == "delivered", 30,
                       "the record")
        finally:
            stop(b)
        assert seen[0].headers["webhook-id"] == seen[1].headers["webhook-id"]
        assert seen[1].error == "" and seen[1].answered == 200
        attempts = store.list_attempts(db, [held.id])
        assert [a.response_code for a in attempts] == [200]


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_rest_push_to_processed_webhook(kind: str, tmp_path: Path):
    """msgcenter serve with its worker: an event pushed over REST is rendered, accepted by
    SMTP, and a signed "processed" webhook arrives with the template version and the
    relay's answer; the event's status page lists the webhook delivery."""
    with Receiver() as receiver, MailSink() as sink:
        def prepare(db):
            demo.ensure_catalog(db)
            receiver.secret = webhooks.add_endpoint(db, receiver.url).secret

        env = {"MC_SMTP_HOST": sink.host, "MC_SMTP_PORT": str(sink.port),
               "MC_WEBHOOK_POLL_INTERVAL": "0.2"}
        with rest_stack(kind, tmp_path, worker=True, env=env, prepare=prepare) as stack:
            reply = stack.call("POST", "/api/v1/events", {
                "type": "order_confirmation", "email": "ann@example.com",
                "ctx": {"client": {"firstname": "Ann"}}}, key="push")
            plid = reply.json["plId"]
            got = receiver.wait_for(lambda seen: any(
                r.payload and r.payload["type"] == "processed" for r in seen))
            assert len(sink.messages) == 1
            processed = next(r for r in got if r.payload and r.payload["type"] == "processed")
            data = processed.payload["data"]
            assert data["plId"] == plid and data["templateVersion"] == 1
            assert data["providerResponse"].startswith("250")
            assert data["address"] == "ann@example.com" and data["channel"] == "email"
            wait_until(lambda: stack.call("GET", f"/api/v1/events/{plid}").json["webhooks"],
                       30, "the delivery on the status page")
            page = stack.call("GET", f"/api/v1/events/{plid}").json
            assert page["status"] == "processed" and page["attempts"][0]["outcome"] == "sent"
            assert page["webhooks"][0]["webhookId"] == processed.headers["webhook-id"]

"""Testing a template before (and after) it goes live: test events, previews, proofs.

A *test event* is built from a seed (address + ctx), from an event XML file, or from
nothing (every field renders empty).  ``preview`` renders the draft or a version with
it; ``send_proofs`` renders for each target and sends for real through the email
channel, subject prefixed ``[PROOF]``, each with its own Message-ID, logged in the
delivery log with ``is_proof`` (never counted as a delivery, never tied to an event).
"""

from __future__ import annotations

import dataclasses
import email.utils
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from soap_service import catalog, clock, ctxdata, messages, render
from soap_service.addresses import is_email_address
from soap_service.config import Settings
from soap_service.errors import RenderError, ValidationFailed
from soap_service.models import (
    TEXT_ATTRIBUTE_FIELDS,
    WISHED_CHANNEL_OF,
    Channel,
    Delivery,
    EmailMessage,
    Event,
    Queue,
    ReconcileOn,
    RenderedMessage,
    Seed,
    SendResult,
    Targeting,
    Template,
    TemplateContent,
)
from soap_service.store import Database
from soap_service.store import catalog as store
from soap_service.xmlsafe import local_name

log = logging.getLogger(__name__)

PROOF_PREFIX = "[PROOF] "


# ---------------------------------------------------------------- test data


def ctx_from_xml(text: str) -> str:
    """The ``<ctx>`` of an XML file (a ``<ctx>``, an event or a SOAP request), as text."""
    return ctxdata.ctx_text(ctxdata.ctx_from_xml(text, wrap_bare=False))


def ctx_from_json(text: str) -> str:
    """JSON test data -> ``<ctx>`` text (see :mod:`soap_service.ctxdata`)."""
    return ctxdata.ctx_text(ctxdata.ctx_from_json(text))


def make_test_event(tpl: Template, address: str | None, ctx_xml: str = "<ctx/>",
               external_id: str | None = None) -> Event:
    """An unsaved event of the template's type and channel, addressed to ``address``."""
    wished = WISHED_CHANNEL_OF[tpl.channel]
    by_channel = {Channel.EMAIL: "email", Channel.SMS: "mobile_phone",
                  Channel.PUSH: "registration_token"}
    fields: dict[str, Any] = {by_channel[tpl.channel]: address} if address else {}
    return Event(id=0, queue=Queue.RT, event_type=tpl.event_type, ctx_xml=ctx_xml,
                 wished_channel=wished, external_id=external_id, created_at=clock.utcnow(),
                 **fields)


def event_from_xml(tpl: Template, text: str) -> Event:
    """A test event from an ``<rtEvent ...><ctx>...</ctx></rtEvent>`` file (or a SOAP
    request holding one)."""
    ctx = ctxdata.ctx_from_xml(text, wrap_bare=False)
    parent = ctx.getparent()
    attrs = {local_name(k): v for k, v in parent.attrib.items()} \
        if parent is not None else {}
    fields = {field: attrs[a] for a, field in TEXT_ATTRIBUTE_FIELDS.items() if a in attrs}
    base = make_test_event(tpl, None, ctxdata.ctx_text(ctx))
    return Event(**{**base.__dict__, **fields, "attributes": attrs,
                    "event_type": attrs.get("type", tpl.event_type)})


def seed_event(tpl: Template, seed: Seed) -> Event:
    return make_test_event(tpl, seed.address, seed.ctx_xml, seed.external_id)


def with_test_profile(db: Database, event: Event) -> Event:
    """For a template of a profile-based type: the test event joined to the profile its
    seed (or event file) names, as the worker would join it -- so previews and proofs
    show ``profile.*``.  Its unsubscribe link is a placeholder that records nothing: a
    proof never carries a working opt-out of a real customer."""
    et = catalog.get_event_type(db, event.event_type)
    if et is None or et.targeting is not Targeting.PROFILE:
        return event
    from soap_service import profiles, targeting

    by_email = et.reconcile_on is ReconcileOn.EMAIL
    profile = profiles.find(db, email=event.email) if by_email else \
        profiles.find(db, external_id=event.external_id)
    if profile is None:
        return event
    placeholder = f"{db.settings.public_url.rstrip('/')}/u/preview"
    return targeting.with_profile(event, profile, placeholder)


def _in_language(event: Event, language: str | None) -> Event:
    if not language:
        return event
    from soap_service.languages import check_language

    return dataclasses.replace(event, language=check_language(language))


# ---------------------------------------------------------------- preview


@dataclass(frozen=True)
class Preview:
    template: str
    version: str  # "draft" or the version number
    address: str
    message: RenderedMessage


def _content(db: Database, name: str, version: int | None) -> tuple[TemplateContent, str]:
    if version is None:
        return catalog.get_template(db, name).template.draft, "draft"
    return catalog.get_version(db, name, version).version.content, str(version)


def preview(db: Database, name: str, *, version: int | None = None, seed: str | None = None,
            event_xml: str | None = None, language: str | None = None) -> Preview:
    """Render the draft (or ``version``) with a seed's data, an event file, or the first
    seed when neither is given (no seed: every field renders empty); ``language``: the
    variant that language gets (else the test event's or its profile's language)."""
    tpl = catalog.get_template(db, name).template
    content, label = _content(db, name, version)
    if event_xml is not None:
        event = event_from_xml(tpl, event_xml)
    else:
        seeds = catalog.list_seeds(db, name)
        chosen = [s for s in seeds if seed is None or s.address == seed]
        if seed is not None and not chosen:
            raise ValidationFailed(f"template {name!r} has no seed {seed!r}")
        event = seed_event(tpl, chosen[0]) if chosen else make_test_event(tpl, None)
    event = _in_language(with_test_profile(db, event), language)
    message = render.render_message(content, event, tpl.channel)
    return Preview(name, label, event.address or "", message)


# ---------------------------------------------------------------- proofs


@dataclass(frozen=True)
class ProofResult:
    address: str
    outcome: str  # sent | temporary | permanent | renderFailed
    code: int | None
    text: str
    message_id: str
    duration_ms: int = 0


def send_proofs(db: Database, settings: Settings, name: str, *, to: list[str] | None = None,
                seeds: bool = False, version: int | None = None,
                language: str | None = None) -> list[ProofResult]:
    """Render and send proofs: to ``to`` (with the first seed's data) or to every seed;
    ``language``: the variant that language gets."""
    tpl = catalog.get_template(db, name).template
    if tpl.channel is not Channel.EMAIL:
        raise ValidationFailed(f"proofs are sent by email; template {name!r} is "
                               f"{tpl.channel.value}: use msgcenter template preview")
    content, label = _content(db, name, version)
    render.check_complete(content, tpl.channel)
    version_id = catalog.get_version(db, name, version).version.id if version else None
    results: list[ProofResult] = []
    pending: list[tuple[int, EmailMessage]] = []
    for event in [_in_language(with_test_profile(db, e), language)
                  for e in _targets(db, tpl, to or [], seeds)]:
        try:
            rendered = render.render_message(content, event, tpl.channel)
        except RenderError as exc:
            results.append(ProofResult(event.email or "", "renderFailed", None, exc.message, ""))
            continue
        try:
            msg = proof_message(rendered, event, name, label)
        except RenderError as exc:
            results.append(ProofResult(event.email or "", "renderFailed", None, exc.message, ""))
            continue
        pending.append((len(results), msg))
        results.append(ProofResult(msg.to, "unsent", None, "", msg.message_id))
    outcomes = _send(settings, [m for _, m in pending])
    for (index, msg), sent in zip(pending, outcomes, strict=True):
        results[index] = ProofResult(msg.to, sent.outcome.value, sent.code, sent.text,
                                     msg.message_id, sent.duration_ms)
    _record(db, results, version_id)
    return results


def _targets(db: Database, tpl: Template, to: list[str], all_seeds: bool) -> list[Event]:
    seed_list = catalog.list_seeds(db, tpl.name)
    if all_seeds:
        if not seed_list:
            raise ValidationFailed(f"template {tpl.name!r} has no seeds (msgcenter seed add)")
        return [seed_event(tpl, s) for s in seed_list]
    if not to:
        raise ValidationFailed("give --to ADDRESS (repeatable) or --seeds")
    for addr in to:
        if not is_email_address(addr.strip()):
            raise ValidationFailed(f"--to {addr!r} is not an email address")
    data = seed_list[0] if seed_list else None
    return [make_test_event(tpl, addr, data.ctx_xml if data else "<ctx/>",
                            data.external_id if data else None) for addr in to]


def proof_message(rendered: RenderedMessage, event: Event, name: str, label: str
                  ) -> EmailMessage:
    """The proof of ``rendered`` for the test event: built as a send is
    (``messages.email_message``), subject prefixed, with a Message-ID of its own."""
    _, from_email = email.utils.parseaddr(rendered.from_addr)
    domain = from_email.rpartition("@")[2] or "localhost"
    return messages.email_message(
        dataclasses.replace(rendered, subject=PROOF_PREFIX + rendered.subject),
        event.email or "", f"<mc.proof.{uuid.uuid4().hex}@{domain}>",
        email_format=event.email_format, headers={"X-MC-Proof": f"{name}@{label}" + (
            f"/{rendered.language}" if rendered.language else "")})


def _send(settings: Settings, messages: list[EmailMessage]) -> list[SendResult]:
    if not messages:
        return []
    from soap_service.channels.direct import send_messages

    return send_messages(settings, messages)


def _record(db: Database, results: list[ProofResult], version_id: int | None) -> None:
    store.record_proofs(db, version_id, [Delivery(
        channel=Channel.EMAIL.value, address=r.address,
        outcome=r.outcome if r.outcome != "renderFailed" else "permanent",
        response_code=r.code, response_text=r.text, message_id=r.message_id or None,
        duration_ms=r.duration_ms) for r in results], clock.utcnow())
    for r in results:
        log.info("proof.sent outcome=%s message_id=%s", r.outcome, r.message_id)

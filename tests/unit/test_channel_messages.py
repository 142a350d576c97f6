"""From rendered content to each channel's message (pure): the SMS with the template's
sender and our stable reference, the push notification with its platform, expiration
and priority, refusals of content that would send nothing, and address kinds for
quarantine (guessed from what an operator types, normalised for comparison)."""

from __future__ import annotations

from datetime import datetime

import pytest

from soap_service import messages
from soap_service.errors import RenderError
from soap_service.exclusions import guess_kind, normalise_address
from soap_service.models import AddressKind, Channel, PushPlatform, RenderedMessage


def test_an_sms_carries_its_text_the_templates_sender_and_the_reference() -> None:
    rendered = RenderedMessage(Channel.SMS, sms="Order A1 shipped", from_addr=" My  Shop ")
    sms = messages.sms_message(rendered, messages.reference(1, 42))
    assert (sms.text, sms.sender, sms.reference) == ("Order A1 shipped", "My Shop", "mc.1.42")
    assert messages.sms_message(RenderedMessage(Channel.SMS, sms="x"), "r").sender == ""


def test_an_empty_sms_is_refused() -> None:
    with pytest.raises(RenderError, match="SMS text rendered empty"):
        messages.sms_message(RenderedMessage(Channel.SMS, sms="  \n"), "r")


def test_a_push_carries_platform_expiration_priority_and_data() -> None:
    rendered = RenderedMessage(Channel.PUSH, push_title=" Hi ", push_body="Shipped",
                               push_data={"order": "A1"})
    until = datetime(2031, 1, 1)
    push = messages.push_message(rendered, PushPlatform.IOS, "mc.1.7", expiration=until,
                                 urgent=False)
    assert (push.platform, push.title, push.body, push.data) == (
        PushPlatform.IOS, "Hi", "Shipped", {"order": "A1"})
    assert (push.expiration, push.urgent, push.reference) == (until, False, "mc.1.7")


def test_a_data_only_push_is_allowed_and_an_empty_one_refused() -> None:
    data_only = RenderedMessage(Channel.PUSH, push_data={"silent": "1"})
    assert messages.push_message(data_only, PushPlatform.ANDROID, "r").data == {"silent": "1"}
    with pytest.raises(RenderError, match="notification rendered empty"):
        messages.push_message(RenderedMessage(Channel.PUSH), PushPlatform.ANDROID, "r")


@pytest.mark.parametrize(("typed", "kind", "stored"), [
    ("Ops@Example.COM", AddressKind.EMAIL, "ops@example.com"),
    ("+33 6 12 34 56 78", AddressKind.PHONE, "+33612345678"),
    ("06-12-34-56-78", AddressKind.PHONE, "0612345678"),  # no default country: digits
    ("0f" * 32, AddressKind.TOKEN, "0f" * 32),
    ("fXz3-AbC:APA91bH", AddressKind.TOKEN, "fXz3-AbC:APA91bH"),
])
def test_address_kinds_are_guessed_and_addresses_normalised(typed: str, kind: AddressKind,
                                                            stored: str) -> None:
    assert guess_kind(typed) is kind
    assert normalise_address(typed, kind) == stored


def test_a_phone_is_read_in_the_default_country() -> None:
    assert normalise_address("06 12 34 56 78", AddressKind.PHONE, "FR") == "+33612345678"

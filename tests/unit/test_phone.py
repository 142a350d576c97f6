"""E.164 normalisation of mobile numbers and their masking for logs."""

from __future__ import annotations

import pytest

from soap_service.errors import ConfigError, ValidationFailed
from soap_service.phone import default_region, mask_phone, normalise_phone


@pytest.mark.parametrize(("raw", "default", "e164"), [
    ("+33612345678", None, "+33612345678"),
    ("+33 6 12 34 56 78", None, "+33612345678"),
    ("+33 (0)6 12-34-56-78", None, "+33612345678"),
    ("0033612345678", None, "+33612345678"),
    ("06 12 34 56 78", "33", "+33612345678"),
    ("06.12.34.56.78", "+33", "+33612345678"),
    ("0612345678", 33, "+33612345678"),
    ("0612345678", "FR", "+33612345678"),
    ("  +1 650-253-0000 ", None, "+16502530000"),
    ("(650) 253-0000", "1", "+16502530000"),
    ("+49 151 23456789", "33", "+4915123456789"),  # an explicit country code wins
    ("+7 912 345-67-89", None, "+79123456789"),
])
def test_numbers_become_e164(raw: str, default: str | int | None, e164: str) -> None:
    """Spaces, dots, dashes, (0), 00 prefixes and national forms all become E.164."""
    assert normalise_phone(raw, default) == e164


@pytest.mark.parametrize(("raw", "default", "problem"), [
    ("", "33", "mobilePhone is empty"),
    ("   ", "33", "mobilePhone is empty"),
    ("0612345678", None, "mobilePhone has no country code (write it as +CC...) and no "
                         "default country code is configured"),
    ("not a number", "33", "mobilePhone is not a phone number"),
    ("+999 123456", None, "mobilePhone has an unknown country code"),
    ("+336", None, "mobilePhone is too short"),
    ("+33 6 12", None, "mobilePhone is too short for country code +33"),
    ("+33 6 12 34 56 78 99 99", None, "mobilePhone is too long for country code +33"),
    ("+44 7700 900123", None, "mobilePhone is not a valid number for country code +44"),
    ("1" * 80, "33", "mobilePhone is not a phone number (over 64 characters)"),
])
def test_bad_numbers_are_refused_naming_the_problem(raw: str, default: str | None,
                                                     problem: str) -> None:
    """Each refusal says what is wrong, names the attribute, and never echoes the number."""
    with pytest.raises(ValidationFailed) as caught:
        normalise_phone(raw, default)
    assert caught.value.message == problem
    digits = "".join(c for c in raw if c.isdigit())
    assert len(digits) < 6 or digits not in caught.value.message


def test_the_field_name_is_the_callers() -> None:
    """Ingest names the attribute it read."""
    with pytest.raises(ValidationFailed, match=r"^phone is empty$"):
        normalise_phone("", "33", field="phone")


@pytest.mark.parametrize("bad", ["999", "XX", "France", "+"])
def test_a_bad_default_country_code_is_a_configuration_error(bad: str) -> None:
    """The default must be a calling code or a region."""
    with pytest.raises(ConfigError):
        default_region(bad)


@pytest.mark.parametrize(("number", "masked"), [
    ("+33612345678", "+336******78"),
    ("+16502530000", "+165******00"),
    ("+4412", "*****"),
])
def test_masked_numbers_keep_only_the_ends(number: str, masked: str) -> None:
    """Logs show the country code, one digit and the last two."""
    assert mask_phone(number) == masked

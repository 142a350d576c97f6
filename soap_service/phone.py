"""Phone numbers (pure): E.164 normalisation for SMS addresses, and masking for logs.

``normalise_phone`` turns what a caller wrote (``06 12 34 56 78``, ``+33 6 12-34-56-78``,
``0033612345678``) into E.164 (``+33612345678``) with Google's libphonenumber metadata
(the ``phonenumbers`` package), or raises :class:`~soap_service.errors.ValidationFailed`
naming the attribute and the problem — never echoing the number, which is personal data
and may end up in a log.  A number written without its country code is read in the
configured default country; with none configured it is refused.

``mask_phone`` is the only form of a number that may appear in a log line.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, ValidationResult

from soap_service.errors import ConfigError, ValidationFailed

_MAX_INPUT = 64  # characters; longer input is not a phone number, whatever it holds

_PARSE_PROBLEMS = {
    NumberParseException.INVALID_COUNTRY_CODE: "has an unknown country code",
    NumberParseException.NOT_A_NUMBER: "is not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "is too short",
    NumberParseException.TOO_SHORT_NSN: "is too short",
    NumberParseException.TOO_LONG: "is too long",
}

_LENGTH_PROBLEMS = {
    ValidationResult.INVALID_COUNTRY_CODE: "has an unknown country code",
    ValidationResult.TOO_SHORT: "is too short for country code +{cc}",
    ValidationResult.TOO_LONG: "is too long for country code +{cc}",
    ValidationResult.INVALID_LENGTH: "has an impossible length for country code +{cc}",
}


def default_region(default_country_code: str | int | None) -> str | None:
    """The region libphonenumber reads national numbers in: from a calling code (``33``,
    ``"+33"``) or a region (``"FR"``); ``None`` when none is configured."""
    raw = str(default_country_code or "").strip()
    if not raw:
        return None
    if raw.isalpha() and len(raw) == 2 and raw.upper() in phonenumbers.SUPPORTED_REGIONS:
        return raw.upper()
    digits = raw.removeprefix("+")
    if digits.isdigit():
        region = phonenumbers.region_code_for_country_code(int(digits))
        if region != phonenumbers.UNKNOWN_REGION:
            return str(region)
    raise ConfigError(f"default country code {raw!r} is neither a calling code (33, +33) "
                      "nor a region (FR)")


def normalise_phone(raw: str, default_country_code: str | int | None = None, *,
                    field: str = "mobilePhone") -> str:
    """``raw`` in E.164, or :class:`ValidationFailed` saying what is wrong with ``field``."""
    text = (raw or "").strip()
    if not text:
        raise ValidationFailed(f"{field} is empty")
    if len(text) > _MAX_INPUT:
        raise ValidationFailed(f"{field} is not a phone number (over {_MAX_INPUT} characters)")
    if text.startswith("00"):  # the international prefix of most of the world
        text = "+" + text[2:]
    region = None if text.startswith("+") else default_region(default_country_code)
    if not text.startswith("+") and region is None:
        raise ValidationFailed(f"{field} has no country code (write it as +CC...) and no "
                               "default country code is configured")
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        problem = _PARSE_PROBLEMS.get(exc.error_type, "is not a phone number")
        raise ValidationFailed(f"{field} {problem}") from exc
    cc = number.country_code
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason in _LENGTH_PROBLEMS:
        raise ValidationFailed(f"{field} {_LENGTH_PROBLEMS[reason].format(cc=cc)}")
    if not phonenumbers.is_valid_number(number):
        raise ValidationFailed(f"{field} is not a valid number for country code +{cc}")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def mask_phone(number: str) -> str:
    """``+33612345678`` → ``+336******78``: enough to tell numbers apart in a log."""
    if len(number) <= 6:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 6) + number[-2:]

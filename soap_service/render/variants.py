"""Language variants of a template (SPEC §10), pure: which content serves a language.

A template's content holds its default parts and, in ``variants``, the parts of each
language (keys are BCP 47 tags as :func:`normalise_language` writes them: ``fr``,
``fr-CA``).  A language picks a variant by its fallback chain -- ``fr-CA`` tries ``fr-CA``,
then ``fr``, then the default -- compared case-insensitively; no language is the
default.  A variant has its own subject and bodies; an empty From, Reply-To or push data
is the default's (a sender is rarely translated), every other empty part stays empty.
"""

from __future__ import annotations

import dataclasses
import re

from soap_service.models import TemplateContent

INHERITED_PARTS = ("from_addr", "reply_to", "push_data")
LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")


def normalise_language(tag: str) -> str:
    """``FR_ca`` -> ``fr-CA``: language lower-case, a two-letter region upper-case, a
    four-letter script title-case (``zh-Hant``), other subtags lower-case (BCP 47 habits)."""
    parts = tag.strip().replace("_", "-").split("-")
    out = [parts[0].lower()]
    for part in parts[1:]:
        if len(part) == 2:
            out.append(part.upper())
        elif len(part) == 4 and part.isalpha():
            out.append(part.title())
        else:
            out.append(part.lower())
    return "-".join(out)


def fallback_chain(language: str | None) -> list[str]:
    """``fr-CA`` -> ``["fr-ca", "fr"]`` (lower-case, most specific first); none -> []."""
    tag = (language or "").strip().replace("_", "-").lower()
    if not tag or not LANGUAGE_TAG.match(tag):
        return []
    parts = tag.split("-")
    return ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]


def select_variant(content: TemplateContent, language: str | None
                   ) -> tuple[str, TemplateContent]:
    """(the variant's key, its content with inherited parts filled in), or ``("",
    default content)`` when no variant matches the language's chain."""
    if not content.variants:
        return "", content
    by_lower = {key.lower(): key for key in content.variants}
    for candidate in fallback_chain(language):
        key = by_lower.get(candidate)
        if key is not None:
            return key, merged(content, key)
    return "", dataclasses.replace(content, variants={})


def merged(content: TemplateContent, key: str) -> TemplateContent:
    """Variant ``key`` of ``content``, its empty inherited parts taken from the default."""
    variant = content.variants[key]
    inherited = {part: getattr(content, part) for part in INHERITED_PARTS
                 if not getattr(variant, part)}
    return dataclasses.replace(variant, variants={}, **inherited)

"""Language variants of a template's draft (SPEC §10): add, change, remove, list.

A variant is a set of parts for one language (``fr``, ``fr-CA``), kept in the draft
beside the default parts and published with them in one version (so publishing freezes
every variant, and the version's content hash covers them all).  Which variant an event
gets is decided at render time (``render.variants``).  Parts are checked as the default
parts are (``catalog``); no SQL here.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from soap_service import catalog, clock
from soap_service.errors import Conflict, NotFound, TemplateSyntaxError, ValidationFailed
from soap_service.models import Template, TemplateContent
from soap_service.render.variants import LANGUAGE_TAG, normalise_language
from soap_service.store import Database
from soap_service.store import catalog as store

log = logging.getLogger(__name__)
MAX_VARIANTS = 50


def check_language(language: str) -> str:
    tag = (language or "").strip()
    if not LANGUAGE_TAG.match(tag) or len(tag) > 32:
        raise ValidationFailed(f"invalid language {language!r}: use a language tag such as "
                               "fr or fr-CA")
    return normalise_language(tag)


def _key(draft: TemplateContent, language: str) -> str | None:
    """The variant key of ``draft`` for this language (compared case-insensitively)."""
    return next((k for k in draft.variants if k.lower() == language.lower()), None)


def add_variant(db: Database, name: str, language: str, **parts: Any) -> Template:
    """Add a language variant to the template's draft; its parts as given (see
    ``render.variants`` for what an empty part means)."""
    lang = check_language(language)

    def change(tpl: Template) -> TemplateContent:
        if _key(tpl.draft, lang) is not None:
            raise Conflict(f"template {name!r} already has a {lang} variant (use variant "
                           "update)")
        if len(tpl.draft.variants) >= MAX_VARIANTS:
            raise ValidationFailed(f"a template has at most {MAX_VARIANTS} variants")
        variant = TemplateContent(**{k: v for k, v in parts.items() if v is not None})
        return _with(tpl, {**tpl.draft.variants, lang: variant})

    tpl = store.update_draft(db, name, change, clock.utcnow())
    log.info("template.variant_added name=%s language=%s", name, lang)
    return tpl


def update_variant(db: Database, name: str, language: str, **parts: Any) -> Template:
    """Change parts of a variant (``None`` leaves a part as it is)."""
    lang = check_language(language)

    def change(tpl: Template) -> TemplateContent:
        key = _key(tpl.draft, lang)
        if key is None:
            raise NotFound(f"template {name!r} has no {lang} variant")
        variant = dataclasses.replace(tpl.draft.variants[key],
                                      **{k: v for k, v in parts.items() if v is not None})
        return _with(tpl, {**tpl.draft.variants, key: variant})

    tpl = store.update_draft(db, name, change, clock.utcnow())
    log.info("template.variant_updated name=%s language=%s", name, lang)
    return tpl


def remove_variant(db: Database, name: str, language: str) -> Template:
    lang = check_language(language)

    def change(tpl: Template) -> TemplateContent:
        key = _key(tpl.draft, lang)
        if key is None:
            raise NotFound(f"template {name!r} has no {lang} variant")
        return _with(tpl, {k: v for k, v in tpl.draft.variants.items() if k != key})

    tpl = store.update_draft(db, name, change, clock.utcnow())
    log.info("template.variant_removed name=%s language=%s", name, lang)
    return tpl


def _with(tpl: Template, variants: dict[str, TemplateContent]) -> TemplateContent:
    """The draft with these variants, checked as a draft is (parts of the channel,
    syntax, addresses)."""
    draft = dataclasses.replace(tpl.draft, variants=dict(sorted(variants.items())))
    for key, variant in draft.variants.items():
        try:
            catalog.check_parts(variant, tpl.channel)
        except (ValidationFailed, TemplateSyntaxError) as exc:
            raise ValidationFailed(f"variant {key}: {exc.message}", exc.detail) from exc
    return draft

"""Language variants, pure: the fallback chain (fr-CA -> fr -> default), table-driven,
and what a variant inherits from the default content."""

from __future__ import annotations

import pytest

from soap_service.models import TemplateContent
from soap_service.render.variants import fallback_chain, normalise_language, select_variant

CONTENT = TemplateContent(
    from_addr="shop@example.org", reply_to="help@example.org", subject="Hello", text="Hi",
    variants={"fr": TemplateContent(subject="Bonjour", text="Salut"),
              "fr-CA": TemplateContent(subject="Allô", text="Salut!",
                                       from_addr="qc@example.org"),
              "zh-Hant": TemplateContent(subject="您好")})


@pytest.mark.parametrize(("language", "variant", "subject"), [
    ("fr-CA", "fr-CA", "Allô"),       # exact
    ("fr-ca", "fr-CA", "Allô"),       # case-insensitive
    ("fr_CA", "fr-CA", "Allô"),       # underscore spelling
    ("fr-BE", "fr", "Bonjour"),       # region without a variant -> the language
    ("fr", "fr", "Bonjour"),
    ("FR", "fr", "Bonjour"),
    ("zh-Hant-TW", "zh-Hant", "您好"),  # script subtag kept in the chain
    ("zh", "", "Hello"),              # a more specific variant does not serve its parent
    ("de-DE", "", "Hello"),           # no variant -> default
    ("", "", "Hello"),                # no language -> default
    (None, "", "Hello"),
    ("not a tag!", "", "Hello"),      # garbage -> default, never an error
])
def test_fallback_chain(language: str | None, variant: str, subject: str) -> None:
    """The event's language picks the most specific variant of its chain."""
    key, content = select_variant(CONTENT, language)
    assert (key, content.subject) == (variant, subject)
    assert content.variants == {}


def test_a_variant_inherits_only_the_sender() -> None:
    """An empty From / Reply-To comes from the default; bodies never do (a French mail
    without a text part must not carry the English one)."""
    _, fr = select_variant(CONTENT, "fr")
    assert (fr.from_addr, fr.reply_to, fr.html) == ("shop@example.org", "help@example.org", "")
    _, qc = select_variant(CONTENT, "fr-CA")
    assert qc.from_addr == "qc@example.org"
    assert select_variant(TemplateContent(subject="x"), "fr") == ("", TemplateContent(subject="x"))


@pytest.mark.parametrize(("raw", "chain", "normal"), [
    ("fr-CA", ["fr-ca", "fr"], "fr-CA"),
    ("EN_gb", ["en-gb", "en"], "en-GB"),
    ("zh-hant-tw", ["zh-hant-tw", "zh-hant", "zh"], "zh-Hant-TW"),
])
def test_chain_and_normal_form(raw: str, chain: list[str], normal: str) -> None:
    assert fallback_chain(raw) == chain
    assert normalise_language(raw) == normal

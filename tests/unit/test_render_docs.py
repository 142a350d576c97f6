"""The examples in docs/templates.md render as the page says they do."""

from __future__ import annotations

import re
from pathlib import Path

from soap_service import proof
from soap_service.models import Event, Queue, TemplateContent
from soap_service.render import render_message

DOC = (Path(__file__).resolve().parents[2] / "docs" / "templates.md").read_text(encoding="utf-8")
CTX = ("<ctx><client><firstname>John</firstname><lastname>Doe</lastname></client>"
       "<order id='A-1'/><vip>{vip}</vip><orderdetails>"
       "<article num='1'><name>USB key</name><price>20</price></article>"
       "<article num='2'><name>Mouse &amp; pad</name><price>9.5</price></article>"
       "</orderdetails></ctx>")


def blocks(language: str, after: str) -> list[str]:
    """The fenced code blocks of ``language`` in the section whose title is ``after``."""
    section = DOC.split(after, 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def html_of(source: str, ctx: str) -> str:
    event = Event(id=1, queue=Queue.RT, event_type="order_confirmation", ctx_xml=ctx,
                  email="john.doe@example.com")
    content = TemplateContent(from_addr="shop@example.com", subject="s", html=source)
    return render_message(content, event).html


def test_complete_example_renders_the_same_in_both_syntaxes() -> None:
    """The page's order confirmation, in suite and Jinja syntax, gives one message."""
    suite, jinja = blocks("html", "## A complete example")
    for vip, shipping in (("true", "Free shipping for you."), ("false", "Shipping: 4.90 EUR")):
        ctx = CTX.format(vip=vip)
        out = html_of(suite, ctx)
        assert out == html_of(jinja, ctx)
        assert "<p>Dear John DOE,</p>" in out and "order A-1." in out
        assert "<td>2</td><td>Mouse &amp; pad</td><td>9.50 EUR</td>" in out
        assert shipping in out and out.count("<tr>") == 2


def test_json_test_data_example_gives_the_documented_ctx() -> None:
    """The page's --ctx-json example converts to elements, repeated elements, attributes."""
    (example,) = blocks("json", "## Test data, previews and proofs")
    ctx = proof.ctx_from_json(example)
    src = ("{{ rtEvent.ctx.client.firstname }}: {% for a in rtEvent.ctx.orderdetails.article %}"
           "{{ a.@num }}={{ a.name }} {% endfor %}")
    assert html_of(src, ctx) == "Léa: 1=USB key 2=Mouse "

"""Personalisation: both syntaxes, escaping, missing and required fields, derived text."""

from __future__ import annotations

from pathlib import Path

import pytest

from soap_service.errors import RenderError
from soap_service.models import Channel, Event, Queue, TemplateContent
from soap_service.render import html_to_text, render_message

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "templates"
CTX = (FIX / "order_ctx.xml").read_text(encoding="utf-8")


def event(ctx: str = CTX, **kw) -> Event:
    fields = {"email": "zoe@example.com", "external_id": "C-77", **kw}
    return Event(id=7, queue=Queue.RT, event_type="order_confirmation", ctx_xml=ctx, **fields)


def email(**parts) -> TemplateContent:
    return TemplateContent(**{"from_addr": "shop@example.com", "subject": "Order", **parts})


def render_html(source: str, ev: Event | None = None) -> str:
    return render_message(email(html=source), ev or event()).html


def test_order_confirmation_same_output_in_both_syntaxes() -> None:
    """The realistic order confirmation renders identically in suite and Jinja syntax."""
    suite = render_html((FIX / "order_suite.html").read_text(encoding="utf-8"))
    jinja = render_html((FIX / "order_jinja.html").read_text(encoding="utf-8"))
    assert suite == jinja
    assert "Dear Zoë O&#x27;BRIEN &amp; SONS," in suite
    assert "order A-1042 (zoe@example.com)" in suite
    assert "<td>2</td><td>Cable &lt;2m&gt;</td><td>9.50 EUR</td>" in suite
    assert "<td>3</td><td>Hub</td><td>32.00 EUR</td>" in suite
    assert suite.count("<tr>") == 3
    assert "free shipping" in suite and "Shipping: 4.90" not in suite
    assert 'href="https://shop.example.com/orders/A-1042"' in suite


@pytest.mark.parametrize("ctx_change", ["<vip>false</vip>", "<vip/>"])
def test_condition_else_branches_in_both_syntaxes(ctx_change: str) -> None:
    """Without VIP, the else-if (coupon) and else branches are taken the same way."""
    plain = CTX.replace("<vip>true</vip>", ctx_change)
    coupon = plain.replace("</ctx>", "<coupon>SAVE5</coupon></ctx>")
    for ctx, expected in ((plain, "Shipping: 4.90 EUR"), (coupon, "Your coupon: SAVE5")):
        outs = [render_html((FIX / f).read_text(encoding="utf-8"), event(ctx))
                for f in ("order_suite.html", "order_jinja.html")]
        assert outs[0] == outs[1]
        assert expected in outs[0] and "free shipping" not in outs[0]


def test_html_escaped_text_and_sms_raw() -> None:
    """Values are HTML-escaped in the HTML part and inserted raw in subject, text and SMS."""
    ctx = "<ctx><name>&lt;script&gt;alert(1)&lt;/script&gt; &amp; \"q\"</name></ctx>"
    msg = render_message(email(subject="Hi {{ rtEvent.ctx.name }}",
                               html="<b>{{ rtEvent.ctx.name }}</b>",
                               text="Hi <%= rtEvent.ctx.name %>"), event(ctx))
    assert msg.html == "<b>&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;q&quot;</b>"
    assert msg.text == 'Hi <script>alert(1)</script> & "q"'
    assert msg.subject == 'Hi <script>alert(1)</script> & "q"'
    sms = render_message(TemplateContent(sms="Code {{ rtEvent.ctx.name }}"), event(ctx),
                         Channel.SMS)
    assert sms.sms == 'Code <script>alert(1)</script> & "q"'


def test_missing_field_renders_empty() -> None:
    """An absent element, attribute, index or event field renders as the empty string."""
    src = ("[{{ rtEvent.ctx.nope.deeper }}|{{ rtEvent.ctx.order.@missing }}|"
           "{{ rtEvent.ctx.orderdetails.article[9].name }}|{{ rtEvent.mobilePhone }}|"
           "<%= rtEvent.ctx.client.firstname.more %>]")
    assert render_html(src) == "[||||]"


def test_required_field_missing_names_the_field() -> None:
    """A required field that is missing fails the render with the field's name."""
    with pytest.raises(RenderError) as info:
        render_html("Hi {{ rtEvent.ctx.client.nickname | required }}")
    assert "rtEvent.ctx.client.nickname" in info.value.message
    with pytest.raises(RenderError, match=r"rtEvent\.ctx\.order\.@ref"):
        render_html("<%= required(rtEvent.ctx.order.@ref) %>")
    assert render_html("{{ rtEvent.ctx.client.firstname | required }}") == "Zoë"


def test_event_attributes_and_unknown_attributes() -> None:
    """rtEvent.<attr> and rtEvent.@attr read the event's fields and any attribute it carried."""
    ev = event(attributes={"segment": "gold"}, origin="eCommerce", wished_channel=0)
    out = render_html("{{ rtEvent.externalId }}/{{ rtEvent.@origin }}/{{ rtEvent.segment }}/"
                      "{{ rtEvent.type }}/{{ rtEvent.wishedChannel }}", ev)
    assert out == "C-77/eCommerce/gold/order_confirmation/0"


def test_functions_and_filters() -> None:
    """The documented functions give the documented results in both call styles."""
    cases = {
        "{{ rtEvent.ctx.nope | default('friend') }}": "friend",
        "<%= default(rtEvent.ctx.client.firstname, 'friend') %>": "Zoë",
        "{{ '  x  ' | trim }}": "x",
        "{{ 'hELLO' | capitalize }}": "Hello",
        "{{ 'a b' | title }}": "A B",
        "{{ rtEvent.ctx.client.firstname | lower }}": "zoë",
        "{{ 'abcdef' | truncate(4) }}": "abc…",
        "{{ 'a-b' | replace('-', '+') }}": "a+b",
        "{{ rtEvent.ctx.orderdetails.article | length }}": "3",
        "{{ 'x y&z' | urlencode }}": "x%20y%26z",
        "{{ rtEvent.ctx.orderdetails.article[1].price | number(0) }}": "10",
        "{{ 'n/a' | number }}": "n/a",
        "{{ rtEvent.ctx.orderdetails.article[-1].name }}": "Hub",
        "{% if rtEvent.ctx.orderdetails.article[0].price > -1.5 %}yes{% endif %}": "yes",
    }
    for src, want in cases.items():
        assert render_message(email(text=src), event()).text == want, src


def test_comparisons_numeric_and_text() -> None:
    """Numeric text compares as numbers; other values compare as text; ! and not negate."""
    src = ("{% if rtEvent.ctx.orderdetails.article[0].price > 9.5 %}A{% endif %}"
           "<% if (rtEvent.ctx.orderdetails.article[1].price === '9.50') { %>B<% } %>"
           "{% if not rtEvent.ctx.nope %}C{% endif %}"
           "<% if (!(rtEvent.ctx.vip != 'true') || false) { %>D<% } %>"
           "{% if rtEvent.ctx.client.firstname < 'A' %}E{% endif %}")
    assert render_message(email(text=src), event()).text == "ABCD"


def test_nested_loops_and_loop_variable_scope() -> None:
    """Loops nest, the loop variable shadows nothing outside, and a path can index it."""
    ctx = ("<ctx><g name='x'><i>1</i><i>2</i></g><g name='y'><i>3</i></g></ctx>")
    src = ("{% for g in rtEvent.ctx.g %}{{ g.@name }}:{% for i in g.i %}{{ i }}{% endfor %};"
           "{% endfor %}")
    assert render_message(email(text=src), event(ctx)).text == "x:12;y:3;"


def test_text_part_derived_from_html() -> None:
    """An email with only HTML gets a readable text part; an explicit text part is kept."""
    html = ("<html><head><style>p{color:red}</style></head><body><h1>Hello {{ rtEvent.ctx."
            "client.firstname }}</h1><p>Line one<br>line two</p><ul><li>A</li><li>B</li></ul>"
            "<p><a href='https://x.example/o'>Track</a></p></body></html>")
    msg = render_message(email(html=html), event())
    assert msg.text == "Hello Zoë\n\nLine one\nline two\n\n- A\n- B\n\nTrack (https://x.example/o)\n"
    kept = render_message(email(html=html, text="mine"), event())
    assert kept.text == "mine"
    assert html_to_text("") == ""


def test_headers_cannot_be_injected() -> None:
    """Line breaks coming from event data are folded out of subject, From and Reply-To."""
    ctx = "<ctx><s>Hi\r\nBcc: victim@example.com</s></ctx>"
    msg = render_message(email(subject="{{ rtEvent.ctx.s }}", from_addr="{{ rtEvent.ctx.s }}",
                               reply_to="<%= rtEvent.ctx.s %>", text="x"), event(ctx))
    for value in (msg.subject, msg.from_addr, msg.reply_to):
        assert value == "Hi Bcc: victim@example.com"


def test_namespaced_ctx_and_whole_event_element() -> None:
    """A ctx in the method's namespace, or a whole rtEvent element, is read by local names."""
    ns = "<ctx xmlns='urn:nms:rtEvent'><client><firstname>Ann</firstname></client></ctx>"
    whole = "<rtEvent type='x'><ctx><client><firstname>Bob</firstname></client></ctx></rtEvent>"
    src = "{{ rtEvent.ctx.client.firstname }}"
    assert render_message(email(text=src), event(ns)).text == "Ann"
    assert render_message(email(text=src), event(whole)).text == "Bob"


def test_push_and_sms_parts() -> None:
    """Push title, body and data values and the SMS text are personalised (raw)."""
    content = TemplateContent(push_title="Hi {{ rtEvent.ctx.client.firstname }}",
                              push_body="<%= count(rtEvent.ctx.orderdetails.article) %> items",
                              push_data={"order": "{{ rtEvent.ctx.order.@id }}"})
    msg = render_message(content, event(), Channel.PUSH)
    assert (msg.push_title, msg.push_body, msg.push_data) == ("Hi Zoë", "3 items",
                                                              {"order": "A-1042"})


def test_jinja_whitespace_trimming_and_comments() -> None:
    """``{%-``/``-%}`` trim the neighbouring whitespace; ``{# #}`` renders nothing."""
    src = "a  {%- if true -%}  b  {%- endif -%}  c{# note #}"
    assert render_message(email(text=src), event()).text == "abc"


def test_non_finite_and_odd_numbers_in_data_are_text() -> None:
    """Event data such as "nan", "inf", "1e999" or "1_0" never breaks a render: it is
    text, not a number, for comparisons and the number / truncate functions."""
    ctx = "<ctx><n>nan</n><i>inf</i><b>1e999</b><u>1_0</u></ctx>"
    cases = {
        "{{ 'abcdef' | truncate(rtEvent.ctx.n) }}": "",
        "{{ 'abcdef' | truncate(rtEvent.ctx.i) }}": "",
        "{{ 'abcdef' | truncate(0) }}|{{ 'abcdef' | truncate(-3) }}": "|",
        "{{ 5 | number(rtEvent.ctx.i) }}": "5",
        "{{ rtEvent.ctx.b | number }}/{{ rtEvent.ctx.n | number(2) }}": "1e999/nan",
        "{% if rtEvent.ctx.u == 10 %}num{% else %}text{% endif %}": "text",
        "{{ 1" + "0" * 400 + " > 5 }}": "false",  # too big for a float: compared as text
    }
    for src, want in cases.items():
        assert render_message(email(text=src), event(ctx)).text == want, src

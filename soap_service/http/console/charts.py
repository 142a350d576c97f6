"""Server-rendered SVG charts for the Monitoring page: pure functions, values in, markup
out (escaped; no script, no inline style -- the console's CSP allows neither).

A chart is an ``<svg role="img">`` with a title and a description that reads out the
numbers, one ``<title>`` per bar (a tooltip), and orange / red threshold lines when
levels are set.  The page shows the same numbers in a table beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 520, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 14, 42
COLOURS = ("#1a73e8", "#188038", "#b06000", "#a142f4", "#d93025")
ORANGE, RED = "#b06000", "#c5221f"


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]


def _fmt(value: float) -> str:
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 1.0
    while exp * 10 <= value:
        exp *= 10
    while exp > value:
        exp /= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * exp >= value:
            return step * exp
    return 10 * exp


def bar_chart(chart_id: str, title: str, labels: Sequence[str], series: Sequence[Series],
              unit: str = "", levels: tuple[float | None, float | None] = (None, None),
              label_every: int = 1) -> Markup:
    """Grouped vertical bars, one group per label, one bar per series; ``levels`` are the
    orange and red thresholds (drawn as dashed lines)."""
    orange, red = levels
    values = [v for s in series for v in s.values if v is not None]
    top = _nice_max(max([*values, orange or 0, red or 0, 0]))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    group_w = plot_w / max(len(labels), 1)
    bar_w = max(group_w * 0.8 / max(len(series), 1), 1.0)

    def y(value: float) -> float:
        return TOP + plot_h - plot_h * value / top

    described = "; ".join(
        f"{s.name}: " + ", ".join(f"{lab} {_fmt(v)}" for lab, v in zip(labels, s.values,
                                                                        strict=False)
                                  if v is not None) for s in series) or "no data"
    out = [f'<svg id="{escape(chart_id)}" class="chart" role="img" viewBox="0 0 {WIDTH} '
           f'{HEIGHT}" width="{WIDTH}" height="{HEIGHT}" aria-labelledby="{chart_id}-t '
           f'{chart_id}-d" xmlns="http://www.w3.org/2000/svg">',
           f'<title id="{chart_id}-t">{escape(title)}</title>',
           f'<desc id="{chart_id}-d">{escape(described[:2000])}</desc>']
    for i in range(5):  # grid and y axis labels
        value = top * i / 4
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" '
                   f'y2="{y(value):.1f}" stroke="#dadce0" stroke-width="1"/>')
        out.append(f'<text x="{LEFT - 4}" y="{y(value) + 4:.1f}" text-anchor="end" '
                   f'font-size="10" fill="#3c4043">{escape(_fmt(value))}</text>')
    for gi, lab in enumerate(labels):
        x0 = LEFT + gi * group_w + group_w * 0.1
        for si, s in enumerate(series):
            v = s.values[gi] if gi < len(s.values) else None
            if v is None:
                continue
            height = max(TOP + plot_h - y(v), 0.0)
            out.append(f'<rect class="bar" x="{x0 + si * bar_w:.1f}" y="{y(v):.1f}" '
                       f'width="{bar_w:.1f}" height="{height:.1f}" '
                       f'fill="{COLOURS[si % len(COLOURS)]}" data-value="{v:g}">'
                       f'<title>{escape(f"{s.name}, {lab}: {_fmt(v)} {unit}".strip())}'
                       f'</title></rect>')
        if gi % max(label_every, 1) == 0:
            out.append(f'<text x="{x0 + group_w * 0.4:.1f}" y="{HEIGHT - BOTTOM + 14}" '
                       f'text-anchor="middle" font-size="10" fill="#3c4043">'
                       f'{escape(lab)}</text>')
    for level, colour, name in ((orange, ORANGE, "orange"), (red, RED, "red")):
        if level is not None:
            out.append(f'<line class="threshold {name}" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
                       f'y1="{y(level):.1f}" y2="{y(level):.1f}" stroke="{colour}" '
                       f'stroke-width="2" stroke-dasharray="6 4"><title>{name} level: '
                       f'{escape(_fmt(level))} {escape(unit)}</title></line>')
    legend_x = LEFT
    for si, s in enumerate(series):
        out.append(f'<rect x="{legend_x}" y="{HEIGHT - 14}" width="10" height="10" '
                   f'fill="{COLOURS[si % len(COLOURS)]}"/>')
        out.append(f'<text x="{legend_x + 14}" y="{HEIGHT - 5}" font-size="11" '
                   f'fill="#202124">{escape(s.name)}</text>')
        legend_x += 24 + 7 * len(s.name)
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - every value above is escaped

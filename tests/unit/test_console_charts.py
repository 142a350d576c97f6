"""The console's pure parts: SVG charts (escaped, scaled, threshold lines) and the
threshold verdicts."""

from __future__ import annotations

import lxml.etree
import pytest

from soap_service.errors import ValidationFailed
from soap_service.http.console.charts import Series, bar_chart
from soap_service.thresholds import BY_NAME, check_levels, level_of

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> lxml.etree._Element:
    return lxml.etree.fromstring(str(markup).encode())


def test_bars_scale_to_a_round_top_and_carry_their_values() -> None:
    """Each bar's height is its share of a round maximum; missing values draw nothing."""
    svg = parse(bar_chart("c", "Volume", ["a", "b", "c"],
                          [Series("in", [10, None, 40])], "events"))
    bars = svg.findall(f"{SVG}rect[@class='bar']")
    assert [b.get("data-value") for b in bars] == ["10", "40"]
    heights = [float(b.get("height")) for b in bars]
    assert heights[1] == pytest.approx(heights[0] * 4)
    assert svg.get("role") == "img"
    assert svg.find(f"{SVG}title").text == "Volume"
    assert "in: a 10, c 40" in svg.find(f"{SVG}desc").text


def test_labels_and_names_are_escaped() -> None:
    """Text that reaches the SVG is escaped: a label cannot become markup."""
    markup = bar_chart("c", "<b>t</b>", ["<script>x</script>"],
                       [Series("s&<", [1])])
    svg = parse(markup)
    assert not svg.xpath("//*[local-name()='script' or local-name()='b']")
    assert "<script>x</script>" in "".join(svg.itertext())


def test_threshold_lines_sit_at_their_level() -> None:
    """Orange and red levels are dashed lines; the scale makes room for a level above
    every bar."""
    svg = parse(bar_chart("c", "Queue", ["rt"], [Series("due", [2])], "events",
                          levels=(5, 20)))
    lines = {x.get("class"): float(x.get("y1"))
             for x in svg.findall(f"{SVG}line") if "threshold" in (x.get("class") or "")}
    assert set(lines) == {"threshold orange", "threshold red"}
    assert lines["threshold red"] < lines["threshold orange"]  # higher value, higher up
    bar = svg.find(f"{SVG}rect[@class='bar']")
    assert float(bar.get("y")) > lines["threshold orange"]


@pytest.mark.parametrize(("metric", "value", "orange", "red", "level"), [
    ("queue_due", 3, 2, 10, "orange"),
    ("queue_due", 10, 2, 10, "red"),
    ("queue_due", 1, 2, 10, "ok"),
    ("queue_due", 5, None, None, "ok"),
    ("queue_due", None, 1, 1, "ok"),
    ("queue_due", 7, None, 5, "red"),
    ("workers_alive", 1, 1, 0, "orange"),
    ("workers_alive", 0, 1, 0, "red"),
    ("workers_alive", 2, 1, 0, "ok"),
])
def test_levels(metric: str, value: float | None, orange: float | None, red: float | None,
                level: str) -> None:
    assert level_of(BY_NAME[metric], value, orange, red) == level


@pytest.mark.parametrize(("metric", "orange", "red"), [
    ("queue_due", 10, 2), ("workers_alive", 0, 1), ("queue_due", -1, None),
    ("nope", 1, 2), ("queue_due", float("nan"), None)])
def test_inconsistent_levels_are_refused(metric: str, orange: float | None,
                                         red: float | None) -> None:
    with pytest.raises(ValidationFailed):
        check_levels(metric, orange, red)

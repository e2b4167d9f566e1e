"""The server-drawn SVG charts: named images, escaped labels, colours against the target."""

from __future__ import annotations

from gateway.workspace.charts import Bar, count_bars, percent_bars


def test_percent_chart_colours_and_escapes() -> None:
    svg = str(
        percent_bars(
            "c1",
            "Cumplimiento <por> línea",
            [Bar("A&B", 0.99), Bar("<x>", 0.5), Bar("Z", None)],
            0.98,
        )
    )
    assert 'role="img"' in svg and 'aria-labelledby="c1-t c1-d"' in svg
    assert "Cumplimiento &lt;por&gt; línea" in svg and "A&amp;B" in svg and "&lt;x&gt;" in svg
    assert "<x>" not in svg
    assert svg.count('fill="#1f7a3a"') == 1 and svg.count('fill="#b00020"') == 1
    assert "sin datos" in svg and "meta 98,0 %" in svg


def test_count_chart() -> None:
    svg = str(count_bars("c2", "Incumplimientos", [Bar("S1", 3), Bar("S2", 0)]))
    assert svg.count("<rect") == 1 and "S1: 3; S2: 0" in svg

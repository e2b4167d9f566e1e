"""Server-drawn SVG charts of the supervisor's month: horizontal bars, pure functions.

Nothing is fetched and no script runs (the workspace's CSP allows neither inline styles nor
remote code): colours are SVG presentation attributes, labels are escaped by markupsafe, and
each chart is an `img` named by its <title>, with a data table beside it in the page.
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape

GOOD, BAD, NEUTRAL, INK, GRID = "#1f7a3a", "#b00020", "#0b5cad", "#1d2430", "#8a94a6"
WIDTH, LABEL_W, ROW_H, TOP = 520, 140, 26, 30


@dataclass(frozen=True)
class Bar:
    """One bar: its label, its value (a fraction for percent charts, else a count), a link."""

    label: str
    value: float | None
    href: str | None = None


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %".replace(".", ",")


def _frame(chart_id: str, title: str, desc: str, height: int, body: list[str]) -> Markup:
    head = (
        f'<svg class="chart" id="{escape(chart_id)}" role="img" viewBox="0 0 {WIDTH} {height}"'
        f' aria-labelledby="{escape(chart_id)}-t {escape(chart_id)}-d"'
        ' xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{escape(chart_id)}-t">{escape(title)}</title>'
        f'<desc id="{escape(chart_id)}-d">{escape(desc)}</desc>'
    )
    return Markup(head + "".join(body) + "</svg>")


def _label(y: float, text: str) -> str:
    return (
        f'<text x="{LABEL_W - 8}" y="{y:.1f}" text-anchor="end" font-size="13" fill="{INK}"'
        f' dominant-baseline="middle">{escape(text)}</text>'
    )


def percent_bars(chart_id: str, title: str, bars: list[Bar], target: float) -> Markup:
    """Compliance per group against the target: green at or above it, red below, none grey."""
    span = WIDTH - LABEL_W - 70
    height = TOP + ROW_H * max(len(bars), 1) + 10
    body = []
    x_target = LABEL_W + span * target
    for i, bar in enumerate(bars):
        y = TOP + i * ROW_H
        body.append(_label(y + ROW_H / 2, bar.label))
        if bar.value is None:
            text = "sin datos"
        else:
            colour = GOOD if bar.value >= target else BAD
            w = max(span * bar.value, 1.0)
            rect = (
                f'<rect x="{LABEL_W}" y="{y + 4}" width="{w:.1f}" height="{ROW_H - 8}"'
                f' fill="{colour}"><title>{escape(bar.label)}: {_pct(bar.value)}</title></rect>'
            )
            body.append(f'<a href="{escape(bar.href)}">{rect}</a>' if bar.href else rect)
            text = _pct(bar.value)
        inside = bar.value is not None and bar.value > 0.35
        # A long bar carries its figure inside (white on the bar), clear of the target line.
        x_text = LABEL_W + span * (bar.value or 0) + (-6 if inside else 6)
        anchor, ink = ("end", "#fff") if inside else ("start", INK)
        body.append(
            f'<text x="{x_text:.1f}" y="{y + ROW_H / 2:.1f}" font-size="12" fill="{ink}"'
            f' text-anchor="{anchor}" dominant-baseline="middle">{escape(text)}</text>'
        )
    body.append(
        f'<line x1="{x_target:.1f}" x2="{x_target:.1f}" y1="{TOP - 6}" y2="{height - 6}"'
        f' stroke="{INK}" stroke-width="2" stroke-dasharray="5 3"/>'
        f'<text x="{x_target:.1f}" y="{TOP - 12}" text-anchor="middle" font-size="12"'
        f' fill="{INK}">meta {escape(_pct(target))}</text>'
    )
    desc = "; ".join(
        f"{b.label}: {_pct(b.value) if b.value is not None else 'sin datos'}" for b in bars
    )
    return _frame(chart_id, title, desc or "sin datos", height, body)


def count_bars(chart_id: str, title: str, bars: list[Bar]) -> Markup:
    """Counts per group (breaches by severity or channel)."""
    span = WIDTH - LABEL_W - 60
    height = TOP + ROW_H * max(len(bars), 1) + 10
    top = max((b.value or 0 for b in bars), default=0) or 1
    body = []
    for i, bar in enumerate(bars):
        y = TOP + i * ROW_H
        value = int(bar.value or 0)
        body.append(_label(y + ROW_H / 2, bar.label))
        w = span * value / top
        if value:
            body.append(
                f'<rect x="{LABEL_W}" y="{y + 4}" width="{w:.1f}" height="{ROW_H - 8}"'
                f' fill="{NEUTRAL}"/>'
            )
        body.append(
            f'<text x="{LABEL_W + w + 6:.1f}" y="{y + ROW_H / 2:.1f}" font-size="12"'
            f' fill="{INK}" dominant-baseline="middle">{value}</text>'
        )
    body.append(
        f'<line x1="{LABEL_W}" x2="{LABEL_W}" y1="{TOP - 4}" y2="{height - 6}" stroke="{GRID}"/>'
    )
    desc = "; ".join(f"{b.label}: {int(b.value or 0)}" for b in bars)
    return _frame(chart_id, title, desc or "sin datos", height, body)

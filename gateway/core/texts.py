"""Every text a customer reads, rendered from `templates/customer/<lang>/` (jinja2).

Latin American Spanish by default, English for lines configured `en` or customers who write in
English. Adapters ask for a template by name; they never write customer-facing text themselves.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from routing.model import Line
from routing.schedule import local_time

LANGUAGES = ("es", "en")
WEEKDAYS = {
    "es": ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
_DIR = Path(__file__).with_name("templates") / "customer"


class Texts:
    """Renders customer-facing templates by name and language."""

    def __init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(_DIR)),
            autoescape=False,  # plain text for SMS-like channels; HTML pages escape on their own
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
            auto_reload=False,  # templates ship with the code: no stat() per render
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._templates: dict[tuple[str, str], jinja2.Template] = {}

    def render(self, template_name: str, lang: str, **ctx: Any) -> str:
        """Render `customer/<lang>/<template_name>.txt` with helpers for hours and openings."""
        lang = lang if lang in LANGUAGES else "es"
        key = (template_name, lang)
        template = self._templates.get(key)
        if template is None:  # templates ship with the code: loaded once per process
            template = self._templates[key] = self.env.get_template(f"{lang}/{template_name}.txt")
        line = ctx.get("line")
        if isinstance(line, Line):
            ctx.setdefault("hours", self.hours(line, lang))
        if isinstance(line, Line) and ctx.get("opens_at") is not None:
            ctx.setdefault("opening", self.opening(line, ctx["opens_at"], lang))
        return template.render(**ctx).strip()

    def country_names(self, lang: str) -> dict[str, str]:
        """Country names in `lang` by ISO code, from `countries.txt` (cached)."""
        lang = lang if lang in LANGUAGES else "es"
        cache: dict[str, dict[str, str]] = self.__dict__.setdefault("_countries", {})
        if lang not in cache:
            names = {}
            for row in self.render("countries", lang).splitlines():
                code, sep, name = row.partition(":")
                if sep and code.strip().isalpha():
                    names[code.strip().upper()] = name.strip()
            cache[lang] = names
        return cache[lang]

    def country(self, line: Line, lang: str) -> str:
        """The line's country as a customer reads it ("Estados Unidos", not "Miami")."""
        return self.country_names(lang).get(line.code, line.name)

    def hours(self, line: Line, lang: str) -> str:
        """'lunes a viernes de 06:00 a 21:00; sábado y domingo de 07:00 a 17:00'."""
        return hours_text(line, lang)

    def opening(self, line: Line, opens_at: datetime, lang: str) -> str:
        """'el lunes a las 06:00, hora de México' / 'on Monday at 06:00, Miami time'."""
        return opening_text(line, opens_at, lang)


# Every contact of a closed line is told the same next opening: cached, like hours_text.
@lru_cache(maxsize=1024)
def opening_text(line: Line, opens_at: datetime, lang: str) -> str:
    """A line's opening at `opens_at` (aware) in words, in the line's local time."""
    local = local_time(line, opens_at)
    day = WEEKDAYS.get(lang, WEEKDAYS["es"])[local.weekday()]
    clock = local.strftime("%H:%M")
    date = local.strftime("%d/%m/%Y") if lang == "es" else local.strftime("%Y-%m-%d")
    if lang == "en":
        return f"on {day} {date} at {clock}, {line.name} time"
    return f"el {day} {date} a las {clock}, hora de {line.name}"


@lru_cache(maxsize=256)
def hours_text(line: Line, lang: str) -> str:
    """A line's weekly hours in words, consecutive days with equal hours grouped (cached)."""
    days = WEEKDAYS.get(lang, WEEKDAYS["es"])
    groups: list[tuple[int, int, str]] = []
    for index in range(7):
        spans = _spans(line.hours.get(index, ()), lang)
        if groups and groups[-1][2] == spans:
            groups[-1] = (groups[-1][0], index, spans)
        else:
            groups.append((index, index, spans))
    parts = []
    for first, last, spans in groups:
        if first == last:
            label = days[first]
        elif last == first + 1:
            label = f"{days[first]} {'y' if lang == 'es' else 'and'} {days[last]}"
        else:
            label = f"{days[first]} {'a' if lang == 'es' else 'to'} {days[last]}"
        parts.append(f"{label} {spans}")
    return "; ".join(parts)


def _spans(ranges: tuple[Any, ...], lang: str) -> str:
    if not ranges:
        return "cerrado" if lang == "es" else "closed"
    join, word_from, word_to = (" y ", "de", "a") if lang == "es" else (" and ", "", "to")
    texts = []
    for r in ranges:
        start = f"{r.start // 60:02d}:{r.start % 60:02d}"
        end = f"{r.end // 60:02d}:{r.end % 60:02d}"
        texts.append(f"{word_from} {start} {word_to} {end}".strip())
    return join.join(texts)

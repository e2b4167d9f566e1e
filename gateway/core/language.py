"""Guess whether a customer wrote in English or Spanish, so that English gets English back.

A stop-word count, deliberately simple: it only has to separate the two languages the support
center answers in, and it returns None when the text says too little to tell.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-záéíóúñü']+")
_EN = frozenset(
    "the and is are my our your it not with this that have has can cannot can't don't doesn't "
    "please hello hi thanks thank you we i working work phone calls call line since what why "
    "how help issue problem when from for of to".split()
)
_ES = frozenset(
    "el la los las y es son mi mis nuestro nuestra su no con este esta esto tengo tenemos puedo "
    "por favor hola gracias usted ustedes nosotros yo funciona trabajar teléfono llamadas línea "
    "desde qué por cómo ayuda problema cuando de para del al que se una un".split()
)


def detect_language(text: str | None) -> str | None:
    """'en', 'es', or None when undecided."""
    if not text:
        return None
    words = _WORD.findall(text.lower()[:2000])
    en = sum(1 for w in words if w in _EN)
    es = sum(1 for w in words if w in _ES)
    if en >= 2 and en > es * 1.5:
        return "en"
    if es >= 2 and es > en * 1.5:
        return "es"
    return None

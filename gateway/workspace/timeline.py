"""One incident's conversation and system events merged in time order, with Spanish labels.

Pure: takes the incident JSON (`gateway.web.views.incident_json`), returns display items. Customer
text stays plain strings; the templates escape it.
"""

from __future__ import annotations

from typing import Any

EVENT_ES = {
    "registered": "Registrado",
    "routed": "Enrutado",
    "after_hours": "Recibido fuera de horario",
    "claimed": "Tomado por un agente",
    "attended": "Atención cumplida (primera respuesta)",
    "solution_clock_paused": "Reloj de solución en pausa (esperando al cliente)",
    "resumed_by_customer": "El cliente respondió: reanudado",
    "severity_changed": "Severidad cambiada",
    "escalated": "Escalado",
    "resolved": "Resuelto",
    "closed": "Cerrado",
    "reopened": "Reabierto",
    "attention_breached": "SLA de atención vencido",
    "solution_breached": "SLA de solución vencido",
    "ack_suppressed": "Acuse de recibo omitido",
    "follow_up_of": "Continuación de un incidente cerrado",
    "replied": "Respuesta enviada",
    "message_received": "Mensaje del cliente",
    "note_added": "Nota interna",
}
PHASE_ES = {
    "registro": "registro",
    "diagnostico-inicial": "diagnóstico inicial",
    "escalamiento": "escalamiento",
    "investigacion": "investigación",
    "resolucion-y-recuperacion": "resolución y recuperación",
    "cierre": "cierre",
}
# These events repeat a message already shown in the conversation.
_SHOWN_AS_MESSAGE = {"replied", "message_received", "note_added"}
_DIRECTION = {"in": "cliente", "out": "agente", "note": "nota"}


def event_text(kind: str, detail: dict[str, Any]) -> str:
    """A one-line Spanish description of an audit event."""
    label = EVENT_ES.get(kind, kind)
    parts: list[str] = []
    if kind == "severity_changed":
        parts.append(f"{detail.get('from')} → {detail.get('to')}")
    if kind == "escalated":
        team = f" (equipo {detail['team']})" if detail.get("team") else ""
        parts.append(f"{detail.get('from')} → {detail.get('to')}{team}")
    if kind == "routed":
        parts.append(f"nivel {detail.get('level')}, línea {detail.get('line')}")
    if kind == "resolved" and detail.get("category"):
        parts.append(f"categoría {detail['category']}")
    if detail.get("reason"):
        parts.append(f"motivo: {detail['reason']}")
    if detail.get("phase") in PHASE_ES:
        parts.append(f"fase: {PHASE_ES[detail['phase']]}")
    return f"{label} — {'; '.join(parts)}" if parts else label


# Screenshots and photos shown in the conversation (the download checks their bytes); an SVG or
# anything else is only ever a download.
PREVIEW_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


def timeline(incident: dict[str, Any]) -> list[dict[str, Any]]:
    """Messages (customer, agent, notes) and system events, oldest first."""
    items: list[tuple[str, int, dict[str, Any]]] = []
    for m in incident["messages"]:
        kind = _DIRECTION.get(m["direction"], m["direction"])
        files = [
            {**a, "preview": a["state"] == "stored" and a["content_type"] in PREVIEW_TYPES}
            for a in m.get("attachments", [])
        ]
        items.append((m["at"], 0, {"type": "message", "who": kind, **m, "attachments": files}))
    for e in incident["events"]:
        if e["kind"] in _SHOWN_AS_MESSAGE:
            continue
        text = event_text(e["kind"], e["detail"])
        items.append((e["at"], 1, {"type": "event", "text": text, **e}))
    items.sort(key=lambda item: (item[0], item[1]))
    return [item for _, _, item in items]

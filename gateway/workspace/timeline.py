"""One incident's conversation and system events merged in time order, with Spanish labels.

Pure: takes the incident JSON (`gateway.web.views.incident_json`), returns display items. Customer
text stays plain strings; the templates escape it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.workspace.labels import CHANNEL_BY, category_name, line_name, local_when

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
    "message_edited": "El cliente editó su mensaje",
    "note_added": "Nota interna",
    "attachment_failed": "No se pudo descargar un adjunto",
    "delivery_failed": "Falló un envío al cliente",
    "whatsapp_template_used": "Se usó la plantilla aprobada de WhatsApp",
    "call_ended": "Llamada terminada",
    "reply_call_ended": "Llamada de respuesta terminada",
    "registered_late": "Llamada registrada con retraso",
    "l1_call": "Llamada pasada a L1",
    "voicemail": "Mensaje de voz del cliente",
    "voicemail_failed": "No se pudo guardar el mensaje de voz",
    "transcription_failed": "No se pudo transcribir el mensaje de voz",
    "parse_degraded": "Correo interpretado parcialmente",
    "callback_requested": "Llamada de vuelta solicitada",
    "callback_completed": "Llamada de vuelta completada",
    "callback_busy": "Llamada de vuelta: ocupado",
    "callback_no_answer": "Llamada de vuelta: no contestó",
    "callback_failed": "Llamada de vuelta fallida",
    "callback_canceled": "Llamada de vuelta cancelada",
    "callback_retry_scheduled": "Nuevo intento de llamada programado",
    "callback_not_reached": "No se logró contactar al cliente por teléfono",
    "callback_call_placed": "Llamada de vuelta en curso",
    "callback_call_failed": "No se pudo hacer la llamada de vuelta",
    "callback_call_uncertain": "Llamada de vuelta sin confirmar",
    "callback_call_reconciled": "Llamada de vuelta confirmada",
    "csat_recorded": "El cliente calificó la atención",
    "thanks_recorded": "El cliente agradeció (no reabre el caso)",
    "resolution_notice_queued": "Aviso de resolución enviado al cliente",
    "resolution_notice_skipped": "No se avisó la resolución al cliente",
}
PHASE_ES = {
    "registro": "registro",
    "diagnostico-inicial": "diagnóstico inicial",
    "escalamiento": "escalamiento",
    "investigacion": "investigación",
    "resolucion-y-recuperacion": "resolución y recuperación",
    "cierre": "cierre",
}
STATUS_WORD = {
    "new": "nuevo",
    "in_progress": "en curso",
    "waiting_customer": "esperando al cliente",
    "resolved": "resuelto",
    "closed": "cerrado",
}
# These events repeat a message already shown in the conversation.
_SHOWN_AS_MESSAGE = {"replied", "message_received", "note_added"}
_DIRECTION = {"in": "cliente", "out": "agente", "note": "nota"}
# Detail values in English that agents read (reasons written by the gateway itself).
_REASON_ES = {
    "rate limit": "límite de acuses por remitente",
    "the store was unavailable when the call arrived": "la base de datos no respondía",
    "left in the queue for an agent to call back": "queda en la cola para llamar",
}


def event_text(
    kind: str,
    detail: dict[str, Any],
    countries: Mapping[str, str] | None = None,
    categories: Mapping[str, str] | None = None,
    tz: str | None = None,
) -> str:
    """A one-line Spanish description of an audit event (no raw values or JSON)."""
    countries = countries or {}
    label = EVENT_ES.get(kind) or "Evento: " + kind.replace("_", " ")
    parts: list[str] = []
    if kind == "severity_changed":
        parts.append(f"{detail.get('from')} → {detail.get('to')}")
    if kind == "escalated":
        team = f" (equipo {detail['team']})" if detail.get("team") else ""
        parts.append(f"{detail.get('from')} → {detail.get('to')}{team}")
    if kind == "routed":
        line = line_name(detail.get("line"), countries)
        parts.append(f"nivel {detail.get('level')}, línea de {line}")
    if kind == "after_hours" and detail.get("opens_at"):
        parts.append(f"la línea abre el {local_when(detail['opens_at'], tz)}")
    if kind == "resolved" and detail.get("category"):
        parts.append(f"categoría {category_name(detail['category'], categories or {})}")
    if kind == "csat_recorded":
        parts.append(f"{detail.get('score')} de 5")
    if kind == "reopened" and detail.get("from"):
        parts.append(f"estaba {STATUS_WORD.get(detail['from'], detail['from'])}")
    if kind == "resumed_by_customer" and detail.get("from"):
        parts.append(f"estaba {STATUS_WORD.get(detail['from'], detail['from'])}")
    if kind in ("delivery_failed", "resolution_notice_queued") and detail.get("channel"):
        parts.append(f"por {CHANNEL_BY.get(detail['channel'], detail['channel'])}")
    if kind == "message_edited" and "text" in detail:
        parts.append(f"antes: «{str(detail.get('before') or '')[:300]}»")
        parts.append(f"ahora: «{str(detail['text'])[:300]}»")
    if kind == "follow_up_of" and detail.get("tracking"):
        parts.append(str(detail["tracking"]))
    if kind == "callback_requested" and detail.get("scheduled_for"):
        parts.append(f"para el {local_when(detail['scheduled_for'], tz)}")
    if kind == "callback_retry_scheduled" and detail.get("at"):
        parts.append(f"el {local_when(detail['at'], tz)}")
    if detail.get("reason"):
        reason = str(detail["reason"])
        parts.append(f"motivo: {_REASON_ES.get(reason, reason)}")
    if detail.get("phase") in PHASE_ES:
        parts.append(f"fase: {PHASE_ES[detail['phase']]}")
    return f"{label} — {'; '.join(parts)}" if parts else label


# Screenshots and photos shown in the conversation (the download checks their bytes); an SVG or
# anything else is only ever a download.
PREVIEW_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


def timeline(
    incident: dict[str, Any],
    countries: Mapping[str, str] | None = None,
    categories: Mapping[str, str] | None = None,
    tz: str | None = None,
) -> list[dict[str, Any]]:
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
        text = event_text(e["kind"], e["detail"], countries, categories, tz)
        items.append((e["at"], 1, {"type": "event", "text": text, **e}))
    items.sort(key=lambda item: (item[0], item[1]))
    return [item for _, _, item in items]

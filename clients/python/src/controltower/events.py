"""Events as the edge takes them, with a helper per event type of the taxonomy.

The taxonomy (``taxonomy.json``) is generated from the edge's OpenAPI document
(``clients/taxonomy/generate.py``), so the helpers follow the edge: ``events.backend_fn_error(
fn_name="parse", severity="high")`` builds a ``backend.fn.error`` with the camelCase keys the edge
reads, checks required fields and enums before anything is sent, and leaves the rest to the edge
(whose refusals come back as :class:`controltower.Refused`).
"""

import datetime
import json
import pathlib
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

if TYPE_CHECKING:
    from .helpers import Helpers  # generated stubs: every type's fields, for type checkers

TAXONOMY = json.loads((pathlib.Path(__file__).parent / "taxonomy.json").read_text())
TYPES = {entry["type"]: entry for entry in TAXONOMY["eventTypes"]}


class InvalidEvent(ValueError):
    """An event the edge would refuse, caught before sending; ``field`` names the payload key."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass
class Event:
    type: str
    payload: Dict[str, Any]
    source: Optional[str] = None
    event_id: str = field(default_factory=lambda: "evt_" + uuid.uuid4().hex)
    ts: str = field(default_factory=lambda: now_rfc3339())
    correlation_id: Optional[str] = None

    def body(self, source: str) -> Dict[str, Any]:
        document = {
            "eventId": self.event_id,
            "type": self.type,
            "ts": self.ts,
            "source": self.source or source,
            "payload": self.payload,
        }
        if self.correlation_id:
            document["correlationId"] = self.correlation_id
        return document


def now_rfc3339() -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def event(event_type: str, payload: Dict[str, Any], **envelope: Any) -> Event:
    """An event of ``event_type``; ``payload`` keys in camelCase or snake_case."""
    spec = TYPES.get(event_type)
    if spec is None:
        raise InvalidEvent("type", f"unknown event type {event_type!r}")
    wire = {_camel(key): value for key, value in payload.items() if value is not None}
    fields = spec["fields"]
    for key in wire:
        if key not in fields:
            raise InvalidEvent(f"payload.{key}", f"{event_type} has no field {key!r}; fields: {', '.join(fields)}")
    for key, rules in fields.items():
        if rules["required"] and key not in wire:
            raise InvalidEvent(f"payload.{key}", "is required")
        if "enum" in rules and key in wire and str(wire[key]).lower() not in rules["enum"]:
            raise InvalidEvent(f"payload.{key}", f"must be one of {', '.join(rules['enum'])}")
    return Event(type=event_type, payload=wire, **envelope)


def _helper(event_type: str) -> Callable[..., Event]:
    envelope_keys = ("source", "event_id", "ts", "correlation_id")

    def build(**fields: Any) -> Event:
        envelope = {key: fields.pop(key) for key in envelope_keys if key in fields}
        return event(event_type, fields, **envelope)

    build.__name__ = event_type.replace(".", "_")
    spec = TYPES[event_type]
    build.__doc__ = f"A `{event_type}` event. Fields: " + ", ".join(
        f"{key}{'' if rules['required'] else ' (optional)'}" for key, rules in spec["fields"].items()
    )
    return build


class _Helpers:
    """``events.<type with dots as underscores>(**fields)`` for every type of the taxonomy."""

    def __init__(self) -> None:
        for event_type in TYPES:
            name = event_type.replace(".", "_")
            setattr(self, name, _helper(event_type))

    def __dir__(self):
        return sorted(t.replace(".", "_") for t in TYPES)


events: "Helpers" = _Helpers()  # type: ignore[assignment]

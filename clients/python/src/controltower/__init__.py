"""Control Tower's Python client: build, sign and send events to the edge.

    from controltower import Client, events

    client = Client("http://127.0.0.1:8080", token, secret, source="finance")
    receipt = client.send(events.finance_invoice_generated(invoice_id="INV-1", period="2026-03", total="1234.56"))
"""

from .client import Client, Heartbeat, Receipt, Refused, RetriesExhausted
from .events import TAXONOMY, Event, InvalidEvent, event, events

__all__ = [
    "Client", "Event", "Heartbeat", "InvalidEvent", "Receipt", "Refused", "RetriesExhausted",
    "TAXONOMY", "event", "events",
]

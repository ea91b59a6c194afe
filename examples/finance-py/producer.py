"""A finance integration: records an invoice it generated, then relays a payment provider's
webhook (a file or stdin, in the provider's own shape) as ``finance.payment.webhook``. Only ids,
statuses and amounts travel: the customer's e-mail in the provider's payload is not relayed."""

import json
import os
import sys
import time

from controltower import Client, events

client = Client(os.environ.get("CT_EDGE_URL", "http://127.0.0.1:8080"), os.environ["CT_TOKEN"],
                os.environ["CT_WEBHOOK_SECRET"], source="finance")
prefix = os.environ.get("EXAMPLE_PREFIX", f"finance_{int(time.time())}")


def relay(provider_event: dict) -> dict:
    invoice = provider_event["data"]["object"]
    return {
        "invoice_id": invoice["metadata"]["invoice_id"],
        "status_from": invoice.get("previous_status"),
        "status_to": invoice["status"],
        # Minor units and the currency: exact, never through a float.
        "amount": {"amount_minor": invoice["amount_paid"], "currency": invoice["currency"].upper()},
    }


def main() -> None:
    source = open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin
    provider_event = json.load(source)
    generated = events.finance_invoice_generated(
        invoice_id="INV-2026-03-017", period="2026-03", total="1234.56", vat="205.76",
        document_ref="gs://invoices/INV-2026-03-017.pdf", event_id=f"{prefix}_invoice",
    )
    paid = events.finance_payment_webhook(**relay(provider_event), event_id=f"{prefix}_payment",
                                          correlation_id=provider_event["id"])
    for receipt in client.send_batch([generated, paid]):
        print(json.dumps(receipt.__dict__))


if __name__ == "__main__":
    main()

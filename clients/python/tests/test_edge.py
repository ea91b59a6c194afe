"""Against the real edge (started by services/api/tests/clients_it.rs, which sets CT_EDGE_URL,
CT_EDGE_TOKEN, CT_EDGE_SECRET, CT_EVENT_PREFIX and, for the broker stop, CT_STACK_SCRIPT)."""

import os
import subprocess
import threading
import time
import unittest

from controltower import Client, Refused, events

URL = os.environ.get("CT_EDGE_URL")
PREFIX = os.environ.get("CT_EVENT_PREFIX", "py")


@unittest.skipUnless(URL, "CT_EDGE_URL is set by the Rust harness (clients_it.rs)")
class AgainstTheEdge(unittest.TestCase):
    def client(self, **options):
        return Client(URL, os.environ["CT_EDGE_TOKEN"], os.environ["CT_EDGE_SECRET"], "finance", **options)

    def test_send_duplicate_refusal_and_batch(self):
        client = self.client()
        beat = events.system_heartbeat(system_id="finance", event_id=f"{PREFIX}_send")
        first = client.send(beat)
        self.assertFalse(first.duplicate)
        again = client.send(beat)
        self.assertTrue(again.duplicate, "the same eventId and bytes are a duplicate")
        self.assertEqual((again.partition, again.offset), (first.partition, first.offset))
        with self.assertRaises(Refused) as refused:
            client.send(events.system_heartbeat(system_id="made-up-system", event_id=f"{PREFIX}_refused"))
        self.assertEqual((refused.exception.status, refused.exception.field), (422, "payload.systemId"))
        batch = [
            events.finance_invoice_generated(invoice_id=f"INV-{n}", period="2026-03", total="12.50",
                                             event_id=f"{PREFIX}_batch_{n}")
            for n in range(3)
        ]
        receipts = client.send_batch(batch)
        self.assertEqual([r.event_id for r in receipts], [e.event_id for e in batch])

    def test_standard_webhooks_signatures_are_accepted(self):
        client = self.client(scheme="standard-webhooks")
        self.assertFalse(client.send(events.system_heartbeat(system_id="finance", event_id=f"{PREFIX}_sw")).duplicate)

    def test_a_broker_stop_is_retried_to_success(self):
        script = os.environ.get("CT_STACK_SCRIPT")
        if not script:
            self.skipTest("CT_STACK_SCRIPT not set")
        subprocess.run(["bash", script, "down", "kafka"], check=True, capture_output=True)
        restart = threading.Timer(3.0, lambda: subprocess.run(["bash", script, "up"], check=True, capture_output=True))
        restart.start()
        try:
            started = time.monotonic()
            receipt = self.client(max_attempts=30, cap_ms=5000).send(
                events.system_heartbeat(system_id="finance", event_id=f"{PREFIX}_outage"))
            self.assertFalse(receipt.duplicate)
            self.assertGreater(time.monotonic() - started, 2.0, "the broker was down: the first attempts failed")
        finally:
            restart.join()


if __name__ == "__main__":
    unittest.main()

"""The shared conformance vectors (clients/conformance/vectors.json) and the taxonomy helpers."""

import json
import pathlib
import unittest

from controltower import InvalidEvent, events, retry, signing

VECTORS = json.loads((pathlib.Path(__file__).resolve().parents[2] / "conformance/vectors.json").read_text())
TAXONOMY = json.loads((pathlib.Path(__file__).resolve().parents[2] / "taxonomy/taxonomy.json").read_text())


class Signatures(unittest.TestCase):
    def test_every_vector(self):
        for vector in VECTORS["signatures"]:
            with self.subTest(vector["name"]):
                headers = signing.sign(
                    vector["scheme"],
                    vector["secret"],
                    vector["body"].encode(),
                    timestamp=vector.get("timestamp", 0),
                    message_id=vector.get("id", ""),
                )
                self.assertEqual(headers, vector["headers"])


class Retries(unittest.TestCase):
    def test_retry_after(self):
        for vector in VECTORS["retryAfter"]:
            with self.subTest(vector["header"]):
                self.assertEqual(retry.retry_after_ms(vector["header"], vector["nowUnix"]), vector["expectedMs"])

    def test_backoff_ceiling(self):
        for vector in VECTORS["backoffCeilingMs"]:
            with self.subTest(vector["attempt"]):
                ceiling = retry.backoff_ceiling_ms(vector["attempt"], vector["baseMs"], vector["capMs"])
                self.assertEqual(ceiling, vector["expectedMs"])
                delays = {retry.delay_ms(vector["attempt"], None, vector["baseMs"], vector["capMs"]) for _ in range(50)}
                self.assertTrue(all(0 <= d <= ceiling for d in delays), delays)

    def test_answers(self):
        for vector in VECTORS["answers"]:
            with self.subTest(vector["status"]):
                self.assertEqual(retry.classify(vector["status"]), vector["outcome"])


class Helpers(unittest.TestCase):
    def test_a_helper_per_type_with_camel_case_keys(self):
        types = [t["type"] for t in TAXONOMY["eventTypes"]]
        self.assertEqual(len(dir(events)), len(types))
        for event_type in types:
            self.assertTrue(callable(getattr(events, event_type.replace(".", "_"))), event_type)
        error = events.backend_fn_error(fn_name="parse", severity="HIGH", correlation_id="run_1")
        self.assertEqual((error.type, error.payload), ("backend.fn.error", {"fnName": "parse", "severity": "HIGH"}))
        body = error.body("backend")
        self.assertEqual((body["source"], body["correlationId"]), ("backend", "run_1"))
        self.assertTrue(body["eventId"].startswith("evt_") and body["ts"].endswith("Z"))

    def test_missing_unknown_and_out_of_enum_fields_are_named(self):
        with self.assertRaises(InvalidEvent) as missing:
            events.backend_fn_error(severity="high")
        self.assertEqual(missing.exception.field, "payload.fnName")
        with self.assertRaises(InvalidEvent) as unknown:
            events.system_heartbeat(system_id="finance", colour="red")
        self.assertEqual(unknown.exception.field, "payload.colour")
        with self.assertRaises(InvalidEvent) as enum:
            events.ct_run_completed(run_id="r", status="exploded")
        self.assertEqual(enum.exception.field, "payload.status")


if __name__ == "__main__":
    unittest.main()

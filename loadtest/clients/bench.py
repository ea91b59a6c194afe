"""One Python process sending through `controltower` for a few seconds per mode, closed loop on
one connection at a time; prints one JSON line per mode. Baseline: the same requests, pre-signed
and sent with the standard library alone (no event building, validation or retry logic).

    PYTHONPATH=clients/python/src python3 loadtest/clients/bench.py URL TOKEN SECRET SECONDS PREFIX
"""

import json
import sys
import time
import urllib.request

from controltower import Client, events
from controltower import signing

url, token, secret, seconds, prefix = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]


def timed(mode, send_one, per_call):
    sent, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        send_one(sent)
        sent += per_call
    elapsed = time.monotonic() - started
    print(json.dumps({"language": "python", "mode": mode, "events": sent, "seconds": round(elapsed, 3),
                      "events_per_s": round(sent / elapsed, 1)}), flush=True)


def bare(n):
    body = json.dumps({"eventId": f"{prefix}_bare_{n}", "type": "system.heartbeat", "ts": "2026-03-03T11:00:00Z",
                       "source": "finance", "payload": {"systemId": "finance"}}, separators=(",", ":")).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               **signing.sign("ct", secret, body, timestamp=0, message_id="")}
    with urllib.request.urlopen(urllib.request.Request(url + "/events", data=body, headers=headers, method="POST")) as r:
        r.read()


client = Client(url, token, secret, "finance")


def single(n):
    client.send(events.system_heartbeat(system_id="finance", event_id=f"{prefix}_single_{n}"))


def batch(n):
    client.send_batch([events.system_heartbeat(system_id="finance", event_id=f"{prefix}_batch_{n + i}") for i in range(100)])


timed("bare HTTP, 1 per request", bare, 1)
timed("library, 1 per request", single, 1)
timed("library, 100 per request", batch, 100)

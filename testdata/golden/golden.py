#!/usr/bin/env python3
"""The golden dataset: about 1,000 realistic producer requests covering every event type and
source, with duplicates (the same request resent) and invalid ones mixed in.

  golden.py generate            rewrite requests.jsonl (deterministic: the same file every time)
  golden.py load [--edge URL]   send requests.jsonl to a running edge, signed with the dev secret

Each line of requests.jsonl is {"token": ..., "body": {...}, "expect": <HTTP status>}.
The expected read-model content is expected.json, written by the golden-run test
(services/api/tests/golden_it.rs) when CT_GOLDEN_UPDATE=1 and compared on every other run.
"""
import argparse
import hashlib
import hmac
import json
import random
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUESTS = HERE / "requests.jsonl"
SECRET = b"dev-webhook-secret"
START = datetime(2025, 9, 22, 7, 0, 0, tzinfo=timezone.utc)


def ts(minutes):
    return (START + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def generate():
    rng = random.Random(20250927)
    requests = []
    minute = 0

    def add(source, type_, payload, correlation=None, expect=202):
        nonlocal minute
        minute += rng.randint(1, 9)
        body = {"eventId": f"evt_golden_{len(requests):04d}", "type": type_, "ts": ts(minute), "source": source,
                "payload": payload}
        if correlation:
            body["correlationId"] = correlation
        requests.append({"token": f"dev-token-{source}", "body": body, "expect": expect})
        return body

    contractors = [f"C{n:04d}" for n in range(1, 41)]
    for day in range(240):
        kind = rng.random()
        c = rng.choice(contractors)
        if kind < 0.14:
            run = f"run_{day:04d}"
            add("desktop", "desktop.trigger.contract", {"contractorId": c, "contractId": f"K{rng.randint(100, 999)}"}, run)
            add("desktop", "ct.run.started", {"runId": run, "trigger": "desktop.trigger.contract", "initiator": "staff-07",
                                              "inputs": {"contractId": "K456", "email": "ops@swan.example"}}, run)
            add("backend", "artifact.pointer.written", {"artifactId": f"art_{day}", "uri": f"gs://ct-artifacts/{run}/pack.pdf",
                                                        "contentType": "application/pdf", "sizeBytes": rng.randint(20_000, 900_000)}, run)
            add("desktop", "ct.run.completed", {"runId": run, "status": rng.choice(["success", "success", "failed"]),
                                                "durationMs": rng.randint(800, 9000), "metrics": {"documentsGenerated": rng.randint(1, 6)}}, run)
        elif kind < 0.30:
            add("backend", "excel.timesheet.ingested", {"contractorId": c, "period": f"2025-W{rng.randint(30, 39)}",
                                                        "items": [{"day": d, "hours": 7.5} for d in range(rng.randint(1, 5))],
                                                        "totalHours": rng.choice([7.5, 15, 22.5, 37.5])})
            add("backend", "backend.parsed", {"inputRef": f"gs://ct-uploads/{c}/timesheet.xlsx", "parser": "excel-v2",
                                              "recordCount": rng.randint(1, 60)})
            add("backend", "backend.transform.applied", {"transform": "normalise-hours", "inputRef": f"gs://ct-uploads/{c}/timesheet.xlsx",
                                                         "outputRef": f"gs://ct-clean/{c}/timesheet.json", "recordCount": rng.randint(1, 60)})
        elif kind < 0.48:
            invoice = f"INV-2025-{rng.randint(1000, 9999)}"
            total = round(rng.uniform(200, 9000), 2)
            add("finance", "finance.invoice.generated", {"invoiceId": invoice, "period": "2025-09", "total": total,
                                                         "vat": round(total * 0.2, 2), "documentRef": f"gs://ct-invoices/{invoice}.pdf"})
            add("finance", "finance.payment.webhook", {"invoiceId": invoice, "statusFrom": "pending", "statusTo": rng.choice(["paid", "failed"]),
                                                       "amount": {"amount_minor": int(round(total * 100)), "currency": "GBP"}})
        elif kind < 0.60:
            add("portal", "portal.upload.received", {"contractorId": c, "fileRef": f"gs://ct-uploads/{c}/{day}.pdf",
                                                     "contentType": "application/pdf", "sizeBytes": rng.randint(10_000, 4_000_000),
                                                     "fileName": "John Smith passport.pdf"})
        elif kind < 0.70:
            add("website", "website.form.submitted", {"formId": f"lead-{day}", "captchaScore": round(rng.uniform(0.1, 1.0), 2),
                                                      "name": "Jane Doe", "email": "jane.doe@example.com", "phone": "+44 7700 900123"})
        elif kind < 0.80:
            add("github", "ci.workflow.failed", {"repo": rng.choice(["swan-portal", "swan-backend", "swan-finance"]),
                                                 "runId": rng.randint(10_000_000, 99_999_999), "job": rng.choice(["build", "test", "lint"]),
                                                 "url": "https://ci.example/runs/1", "branch": "main"})
        else:
            add("backend", "backend.fn.error", {"fnName": rng.choice(["timesheetParse", "invoiceRender", "notify"]),
                                                "severity": rng.choice(["low", "medium", "high", "critical"]),
                                                "stackRef": f"gs://ct-logs/{day}.txt", "stack": "Error: boom\n at parse (index.js:12)",
                                                "message": f"failed for contractor {c} (contact a.person@swan.example)"})
        for system in ("portal", "backend", "finance", "desktop", "website"):
            if rng.random() < 0.35:
                add(system, "system.heartbeat", {"systemId": system, "version": "1.4.2", "uptimeS": rng.randint(60, 864000)})

    # Producer retries: the same request again (202, duplicate) ...
    for original in rng.sample(requests, 40):
        requests.append(dict(original))
    # ... and invalid requests, each refused with its status and never projected.
    invalid = [
        ("finance", {"type": "finance.invoice.generated", "source": "finance", "payload": {"invoiceId": "I", "period": "p", "total": "12.345"}}, 422),
        ("portal", {"type": "portal.upload.received", "source": "portal", "payload": {"contractorId": "C1"}}, 422),
        ("backend", {"type": "backend.fn.error", "source": "backend", "payload": {"fnName": "x", "severity": "apocalyptic"}}, 422),
        ("website", {"type": "nope.nope", "source": "website", "payload": {}}, 422),
        ("github", {"type": "ci.workflow.failed", "source": "github", "payload": {"repo": "r", "runId": "abc", "job": "j", "url": "u"}}, 422),
        ("portal", {"type": "finance.invoice.generated", "source": "finance", "payload": {"invoiceId": "I", "period": "p", "total": 1}}, 403),
        ("desktop", {"type": "ct.run.completed", "source": "desktop", "payload": {"runId": "r", "status": "exploded"}}, 422),
    ]
    for n in range(28):
        token_source, template, status = invalid[n % len(invalid)]
        body = dict(template, eventId=f"evt_golden_invalid_{n:02d}", ts=ts(rng.randint(0, 9000)))
        requests.insert(rng.randint(0, len(requests)), {"token": f"dev-token-{token_source}", "body": body, "expect": status})

    with REQUESTS.open("w", encoding="utf-8") as out:
        for request in requests:
            out.write(json.dumps(request, sort_keys=True) + "\n")
    types = {r["body"]["type"] for r in requests if r["expect"] == 202}
    sources = {r["body"]["source"] for r in requests if r["expect"] == 202}
    print(f"wrote {len(requests)} requests ({len(types)} types, {len(sources)} sources) to {REQUESTS}")


def load(edge):
    sent = mismatched = 0
    for line in REQUESTS.read_text(encoding="utf-8").splitlines():
        request = json.loads(line)
        body = json.dumps(request["body"]).encode()
        signature = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        http = urllib.request.Request(f"{edge}/events", data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {request['token']}", "X-CT-Signature": signature})
        for _ in range(30):
            try:
                status = urllib.request.urlopen(http, timeout=10).status
            except urllib.error.HTTPError as error:
                status = error.code
                if status in (429, 503) and request["expect"] not in (429, 503):
                    time.sleep(float(error.headers.get("Retry-After", "1")))
                    continue
            break
        sent += 1
        if status != request["expect"]:
            mismatched += 1
            print(f"{request['body'].get('eventId')}: expected {request['expect']}, got {status}", file=sys.stderr)
    print(f"sent {sent} golden requests to {edge}; {mismatched} answered other than expected")
    return 1 if mismatched else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["generate", "load"])
    parser.add_argument("--edge", default="http://127.0.0.1:8080")
    args = parser.parse_args()
    if args.command == "generate":
        generate()
    else:
        sys.exit(load(args.edge))


if __name__ == "__main__":
    main()

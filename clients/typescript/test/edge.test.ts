// Against the real edge, started by services/api/tests/clients_it.rs (CT_EDGE_URL, CT_EDGE_TOKEN,
// CT_EDGE_SECRET, CT_EVENT_PREFIX, CT_STACK_SCRIPT).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";

import { Client, Refused, events } from "../src/index.js";

const url = process.env.CT_EDGE_URL;
const prefix = process.env.CT_EVENT_PREFIX ?? "ts";
const skip = url ? false : "CT_EDGE_URL is set by the Rust harness (clients_it.rs)";

function client(options: { scheme?: "ct" | "ct-timestamp" | "standard-webhooks"; maxAttempts?: number; capMs?: number } = {}) {
  return new Client({ baseUrl: url!, token: process.env.CT_EDGE_TOKEN!, secret: process.env.CT_EDGE_SECRET!, source: "finance", ...options });
}

test("send, duplicate, refusal and batch", { skip }, async () => {
  const c = client();
  const beat = events["system.heartbeat"]({ systemId: "finance" }, { eventId: `${prefix}_send` });
  const first = await c.send(beat);
  assert.equal(first.duplicate, false);
  const again = await c.send(beat);
  assert.equal(again.duplicate, true, "the same eventId and bytes are a duplicate");
  assert.deepEqual([again.partition, again.offset], [first.partition, first.offset]);
  await assert.rejects(
    c.send(events["system.heartbeat"]({ systemId: "made-up-system" }, { eventId: `${prefix}_refused` })),
    (e: unknown) => e instanceof Refused && e.status === 422 && e.field === "payload.systemId",
  );
  const batch = [0, 1, 2].map((n) =>
    events["finance.invoice.generated"]({ invoiceId: `INV-${n}`, period: "2026-03", total: "12.50" }, { eventId: `${prefix}_batch_${n}` }),
  );
  const receipts = await c.sendBatch(batch);
  assert.deepEqual(receipts.map((r) => r.eventId), batch.map((e) => e.eventId));
});

test("Standard Webhooks signatures are accepted", { skip }, async () => {
  const receipt = await client({ scheme: "standard-webhooks" }).send(events["system.heartbeat"]({ systemId: "finance" }, { eventId: `${prefix}_sw` }));
  assert.equal(receipt.duplicate, false);
});

test("a heartbeat every period until stopped", { skip }, async () => {
  const beat = client().heartbeatEvery(200, "finance");
  await new Promise((resolve) => setTimeout(resolve, 700));
  await beat.stop();
  assert.ok(beat.sent() >= 3, `sent ${beat.sent()}`);
});

test("a broker stop is retried to success", { skip: skip || (process.env.CT_STACK_SCRIPT ? false : "CT_STACK_SCRIPT not set") }, async () => {
  const script = process.env.CT_STACK_SCRIPT!;
  execFileSync("bash", [script, "down", "kafka"], { stdio: "ignore" });
  const restart = new Promise<void>((resolve) =>
    setTimeout(() => {
      execFileSync("bash", [script, "up"], { stdio: "ignore" });
      resolve();
    }, 3000),
  );
  const started = Date.now();
  const receipt = await client({ maxAttempts: 30, capMs: 5000 }).send(events["system.heartbeat"]({ systemId: "finance" }, { eventId: `${prefix}_outage` }));
  await restart;
  assert.equal(receipt.duplicate, false);
  assert.ok(Date.now() - started > 2000, "the broker was down: the first attempts failed");
});

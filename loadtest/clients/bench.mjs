// One Node process sending through @control-tower/client for a few seconds per mode, closed loop
// (one request in flight); prints one JSON line per mode. Baseline: the same requests, pre-signed
// and sent with fetch alone (no event building, validation or retry logic).
//
//   node loadtest/clients/bench.mjs URL TOKEN SECRET SECONDS PREFIX   (after npm run build in clients/typescript)
import { Client, events, sign } from "../../clients/typescript/dist/src/index.js";

const [url, token, secret, secondsText, prefix] = process.argv.slice(2);
const seconds = Number(secondsText);

async function timed(mode, sendOne, perCall) {
  let sent = 0;
  const started = performance.now();
  while (performance.now() - started < seconds * 1000) {
    await sendOne(sent);
    sent += perCall;
  }
  const elapsed = (performance.now() - started) / 1000;
  console.log(JSON.stringify({ language: "typescript", mode, events: sent, seconds: Number(elapsed.toFixed(3)), events_per_s: Number((sent / elapsed).toFixed(1)) }));
}

async function bare(n) {
  const body = new TextEncoder().encode(
    JSON.stringify({ eventId: `${prefix}_bare_${n}`, type: "system.heartbeat", ts: "2026-03-03T11:00:00Z", source: "finance", payload: { systemId: "finance" } }),
  );
  const response = await fetch(`${url}/events`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...sign("ct", secret, body, { timestamp: 0, messageId: "" }) },
    body: Buffer.from(body),
  });
  await response.text();
  if (response.status !== 202) throw new Error(`bare: HTTP ${response.status}`);
}

const client = new Client({ baseUrl: url, token, secret, source: "finance" });
const single = (n) => client.send(events["system.heartbeat"]({ systemId: "finance" }, { eventId: `${prefix}_single_${n}` }));
const batch = (n) =>
  client.sendBatch(Array.from({ length: 100 }, (_, i) => events["system.heartbeat"]({ systemId: "finance" }, { eventId: `${prefix}_batch_${n + i}` })));

await timed("bare HTTP, 1 per request", bare, 1);
await timed("library, 1 per request", single, 1);
await timed("library, 100 per request", batch, 100);

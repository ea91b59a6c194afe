// A backend function that reports a failure and its heartbeat through the TypeScript client.
// Firebase functions would wrap their handler the same way: catch, report (no stack trace, only a
// reference to the log entry), rethrow.
import { Client, events } from "../../clients/typescript/dist/src/index.js";

const client = new Client({
  baseUrl: process.env.CT_EDGE_URL ?? "http://127.0.0.1:8080",
  token: process.env.CT_TOKEN,
  secret: process.env.CT_WEBHOOK_SECRET,
  source: "backend",
});
const prefix = process.env.EXAMPLE_PREFIX ?? `backend_${Date.now()}`;

async function parseTimesheet(input) {
  if (!input.items) throw new Error("timesheet has no items");
  return input.items.length;
}

async function handler(input, context) {
  try {
    return await parseTimesheet(input);
  } catch (error) {
    const receipt = await client.send(
      events["backend.fn.error"](
        { fnName: "parseTimesheet", severity: "high", message: error.message, stackRef: `logs://functions/${context.requestId}` },
        { eventId: `${prefix}_fn_error`, correlationId: context.requestId },
      ),
      { traceparent: context.traceparent },
    );
    console.log(JSON.stringify(receipt));
    return null;
  }
}

await handler({}, { requestId: `${prefix}_req_1`, traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" });
const beat = await client.send(events["system.heartbeat"]({ systemId: "backend", version: "1.4.2" }, { eventId: `${prefix}_heartbeat` }));
console.log(JSON.stringify(beat));

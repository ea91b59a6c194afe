// Control Tower's TypeScript client: build, sign and send events to the edge.
//
//   const client = new Client({ baseUrl: "http://127.0.0.1:8080", token, secret, source: "backend" });
//   await client.send(events["backend.fn.error"]({ fnName: "parse", severity: "high" }));
export { Client, Refused, RetriesExhausted, type ClientOptions, type Receipt, type SendOptions } from "./client.js";
export {
  TAXONOMY,
  InvalidEvent,
  event,
  events,
  wireBody,
  type Envelope,
  type Event,
  type EventPayloads,
  type EventType,
  type Helper,
} from "./events.js";
export { backoffCeilingMs, classify, delayMs, retryAfterMs } from "./retry.js";
export { SCHEMES, sign, type Scheme } from "./signing.js";

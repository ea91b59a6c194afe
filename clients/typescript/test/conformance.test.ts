// The shared conformance vectors (clients/conformance/vectors.json) and the taxonomy helpers.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { InvalidEvent, backoffCeilingMs, classify, delayMs, event, events, retryAfterMs, sign, wireBody, type Scheme } from "../src/index.js";

// dist/test/ -> clients/conformance/
const vectors = JSON.parse(readFileSync(new URL("../../../conformance/vectors.json", import.meta.url), "utf8"));
const taxonomy = JSON.parse(readFileSync(new URL("../../../taxonomy/taxonomy.json", import.meta.url), "utf8"));

test("every signature vector", () => {
  for (const v of vectors.signatures) {
    const headers = sign(v.scheme as Scheme, v.secret, new TextEncoder().encode(v.body), {
      timestamp: v.timestamp ?? 0,
      messageId: v.id ?? "",
    });
    assert.deepEqual(headers, v.headers, v.name);
  }
});

test("Retry-After, backoff ceilings and answers", () => {
  for (const v of vectors.retryAfter) assert.equal(retryAfterMs(v.header, v.nowUnix), v.expectedMs, v.header);
  for (const v of vectors.backoffCeilingMs) {
    const ceiling = backoffCeilingMs(v.attempt, v.baseMs, v.capMs);
    assert.equal(ceiling, v.expectedMs);
    for (let i = 0; i < 50; i++) {
      const d = delayMs(v.attempt, null, v.baseMs, v.capMs);
      assert.ok(d >= 0 && d <= ceiling, `${d} within ${ceiling}`);
    }
  }
  for (const v of vectors.answers) assert.equal(classify(v.status), v.outcome, String(v.status));
});

test("a helper per type, with camelCase keys and the fields named", () => {
  assert.equal(Object.keys(events).length, taxonomy.eventTypes.length);
  for (const { type } of taxonomy.eventTypes) assert.ok(type in events, type);
  const error = events["backend.fn.error"]({ fnName: "parse", severity: "high" }, { correlationId: "run_1" });
  assert.deepEqual(error.payload, { fnName: "parse", severity: "high" });
  // The untyped builder takes snake_case too, and enums in any case, as the edge does.
  assert.deepEqual(event("backend.fn.error", { fn_name: "parse", severity: "HIGH" }).payload, { fnName: "parse", severity: "HIGH" });
  const body = wireBody(error, "backend");
  assert.equal(body.source, "backend");
  assert.equal(body.correlationId, "run_1");
  assert.match(String(body.eventId), /^evt_[0-9a-f]{32}$/);
  const field = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      assert.ok(e instanceof InvalidEvent);
      return e.field;
    }
    assert.fail("no InvalidEvent");
  };
  // What the types already refuse is refused at run time too (for JavaScript callers).
  assert.equal(field(() => event("backend.fn.error", { severity: "high" })), "payload.fnName");
  assert.equal(field(() => event("system.heartbeat", { systemId: "finance", colour: "red" })), "payload.colour");
  assert.equal(field(() => event("ct.run.completed", { runId: "r", status: "exploded" })), "payload.status");
});

test("the payload types refuse what the edge would refuse (checked by tsc)", () => {
  // @ts-expect-error fnName is required
  assert.throws(() => events["backend.fn.error"]({ severity: "high" }), InvalidEvent);
  // @ts-expect-error not a severity
  assert.throws(() => events["backend.fn.error"]({ fnName: "f", severity: "bad" }), InvalidEvent);
  // @ts-expect-error no such field
  assert.throws(() => events["system.heartbeat"]({ systemId: "finance", colour: "red" }), InvalidEvent);
});

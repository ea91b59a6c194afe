// Events as the edge takes them, with a helper per event type of the taxonomy (generated from
// the edge's OpenAPI document by clients/taxonomy/generate.py): `events["backend.fn.error"]({
// fnName: "parse", severity: "high" })`. Required fields and enums are checked before sending;
// the edge checks the rest and its refusals come back as `Refused`.
import { randomUUID } from "node:crypto";
import type { EventPayloads } from "./payloads.js";
import taxonomy from "./taxonomy.json" with { type: "json" };

export type { EventPayloads } from "./payloads.js";

interface FieldSpec {
  kind: string;
  required: boolean;
  enum?: string[];
}
interface TypeSpec {
  type: string;
  schema: string;
  sources: string[] | "any";
  fields: Record<string, FieldSpec>;
}

export const TAXONOMY = taxonomy as unknown as { sources: string[]; eventTypes: TypeSpec[] };
const TYPES = new Map(TAXONOMY.eventTypes.map((spec) => [spec.type, spec]));

/** Every event type of the taxonomy. */
export type EventType = keyof EventPayloads;

export class InvalidEvent extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = "InvalidEvent";
  }
}

export interface Envelope {
  eventId?: string;
  ts?: string;
  source?: string;
  correlationId?: string;
}

export interface Event {
  eventId: string;
  type: string;
  ts: string;
  source?: string;
  correlationId?: string;
  payload: Record<string, unknown>;
}

function camel(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

export function event(type: string, payload: Record<string, unknown>, envelope: Envelope = {}): Event {
  const spec = TYPES.get(type);
  if (!spec) throw new InvalidEvent("type", `unknown event type ${JSON.stringify(type)}`);
  const wire: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(payload)) {
    if (value !== undefined && value !== null) wire[camel(key)] = value;
  }
  for (const key of Object.keys(wire)) {
    if (!(key in spec.fields)) {
      throw new InvalidEvent(`payload.${key}`, `${type} has no field ${key}; fields: ${Object.keys(spec.fields).join(", ")}`);
    }
  }
  for (const [key, rules] of Object.entries(spec.fields)) {
    if (rules.required && !(key in wire)) throw new InvalidEvent(`payload.${key}`, "is required");
    if (rules.enum && key in wire && !rules.enum.includes(String(wire[key]).toLowerCase())) {
      throw new InvalidEvent(`payload.${key}`, `must be one of ${rules.enum.join(", ")}`);
    }
  }
  return {
    eventId: envelope.eventId ?? `evt_${randomUUID().replaceAll("-", "")}`,
    type,
    ts: envelope.ts ?? new Date().toISOString(),
    source: envelope.source,
    correlationId: envelope.correlationId,
    payload: wire,
  };
}

export type Helper<K extends EventType> = (payload: EventPayloads[K], envelope?: Envelope) => Event;

/** `events["<type>"](payload, envelope?)` for every type of the taxonomy, its payload typed. */
export const events = Object.freeze(
  Object.fromEntries(
    TAXONOMY.eventTypes.map((spec) => [
      spec.type,
      (payload: object, envelope?: Envelope) => event(spec.type, payload as Record<string, unknown>, envelope),
    ]),
  ),
) as { readonly [K in EventType]: Helper<K> };

/** The JSON document the edge reads, with the client's source when the event names none. */
export function wireBody(e: Event, source: string): Record<string, unknown> {
  const body: Record<string, unknown> = { eventId: e.eventId, type: e.type, ts: e.ts, source: e.source ?? source, payload: e.payload };
  if (e.correlationId) body.correlationId = e.correlationId;
  return body;
}

// The client: sign, send, retry, and say what the edge answered.
import { setTimeout as sleep } from "node:timers/promises";

import { type Event, type EventPayloads, events, wireBody } from "./events.js";
import { DEFAULT_BASE_MS, DEFAULT_CAP_MS, classify, delayMs, retryAfterMs } from "./retry.js";
import { type Scheme, SCHEMES, sign } from "./signing.js";

/** The edge refused the request (a 4xx other than 408 and 429): retrying will not help. */
export class Refused extends Error {
  constructor(
    readonly status: number,
    readonly code: string | null,
    readonly field: string | null,
    message: string,
  ) {
    super(`${status} ${code}: ${message}${field ? ` (field ${field})` : ""}`);
    this.name = "Refused";
  }
}

/** Every attempt met a retryable answer or a network error. */
export class RetriesExhausted extends Error {
  constructor(
    readonly attempts: number,
    readonly last: string,
  ) {
    super(`gave up after ${attempts} attempts; last: ${last}`);
    this.name = "RetriesExhausted";
  }
}

export interface Receipt {
  eventId: string;
  topic: string;
  partition: number;
  offset: number;
  duplicate: boolean;
}

export interface ClientOptions {
  baseUrl: string;
  token: string;
  secret: string;
  source: string;
  scheme?: Scheme;
  maxAttempts?: number;
  baseMs?: number;
  capMs?: number;
  timeoutMs?: number;
}

export interface SendOptions {
  /** W3C trace context of the caller's span, when it has one. */
  traceparent?: string;
}

export class Client {
  readonly baseUrl: string;
  readonly source: string;
  readonly scheme: Scheme;
  readonly #token: string;
  readonly #secret: string;
  readonly #maxAttempts: number;
  readonly #baseMs: number;
  readonly #capMs: number;
  readonly #timeoutMs: number;

  constructor(options: ClientOptions) {
    const scheme = options.scheme ?? "ct-timestamp";
    if (!SCHEMES.includes(scheme)) throw new Error(`unknown signature scheme ${scheme}`);
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.source = options.source;
    this.scheme = scheme;
    this.#token = options.token;
    this.#secret = options.secret;
    this.#maxAttempts = options.maxAttempts ?? 8;
    this.#baseMs = options.baseMs ?? DEFAULT_BASE_MS;
    this.#capMs = options.capMs ?? DEFAULT_CAP_MS;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  /** Never prints the token or the secret. */
  toJSON(): Record<string, string> {
    return { baseUrl: this.baseUrl, source: this.source, scheme: this.scheme };
  }

  async send(event: Event, options: SendOptions = {}): Promise<Receipt> {
    const body = new TextEncoder().encode(JSON.stringify(wireBody(event, this.source)));
    return (await this.#post("/events", body, event.eventId, options)) as unknown as Receipt;
  }

  async sendBatch(batch: Event[], options: SendOptions = {}): Promise<Receipt[]> {
    if (batch.length === 0) return [];
    const body = new TextEncoder().encode(JSON.stringify(batch.map((e) => wireBody(e, this.source))));
    const answer = await this.#post("/events/batch", body, `${batch[0].eventId}-batch`, options);
    return answer.events as Receipt[];
  }

  /** Sends a heartbeat for `systemId` now and every `periodMs` until the returned stop() is called. */
  heartbeatEvery(
    periodMs: number,
    systemId: string,
    fields: Omit<EventPayloads["system.heartbeat"], "systemId"> = {},
  ): { stop: () => Promise<void>; sent: () => number } {
    let sent = 0;
    let stopped = false;
    const loop = (async () => {
      while (!stopped) {
        try {
          await this.send(events["system.heartbeat"]({ ...fields, systemId }));
          sent += 1;
        } catch {
          // A heartbeat that fails is followed by the next one; the loop never dies.
        }
        const started = Date.now();
        while (!stopped && Date.now() - started < periodMs) await sleep(Math.min(100, periodMs));
      }
    })();
    return {
      stop: async () => {
        stopped = true;
        await loop;
      },
      sent: () => sent,
    };
  }

  async #post(path: string, body: Uint8Array, messageId: string, options: SendOptions): Promise<Record<string, unknown>> {
    let last = "";
    for (let attempt = 1; attempt <= this.#maxAttempts; attempt++) {
      // The same bytes every time; only the signature's timestamp moves.
      const headers: Record<string, string> = {
        authorization: `Bearer ${this.#token}`,
        "content-type": "application/json",
        ...sign(this.scheme, this.#secret, body, { timestamp: Math.floor(Date.now() / 1000), messageId }),
      };
      if (options.traceparent) headers.traceparent = options.traceparent;
      let retryAfter: number | null = null;
      try {
        const response = await fetch(this.baseUrl + path, {
          method: "POST",
          headers,
          body: Buffer.from(body),
          signal: AbortSignal.timeout(this.#timeoutMs),
        });
        const text = await response.text();
        const document = text ? (JSON.parse(text) as Record<string, unknown>) : {};
        const outcome = classify(response.status);
        if (outcome === "accepted") return document;
        const error = (document.error ?? {}) as { code?: string; field?: string; message?: string };
        if (outcome === "refused") throw new Refused(response.status, error.code ?? null, error.field ?? null, error.message ?? "");
        retryAfter = retryAfterMs(response.headers.get("retry-after"), Date.now() / 1000, this.#capMs);
        last = `HTTP ${response.status} ${error.code ?? ""}`.trim();
      } catch (error) {
        if (error instanceof Refused) throw error;
        last = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      }
      if (attempt < this.#maxAttempts) await sleep(delayMs(attempt, retryAfter, this.#baseMs, this.#capMs));
    }
    throw new RetriesExhausted(this.#maxAttempts, last);
  }
}

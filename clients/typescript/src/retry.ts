// When to try again and how long to wait: 408, 429, every 5xx, network errors and timeouts are
// retried with the same eventId and the same bytes; the wait is the server's Retry-After (seconds
// or an HTTP date, capped) or full jitter under min(cap, base * 2^(attempt-1)).

export const DEFAULT_BASE_MS = 200;
export const DEFAULT_CAP_MS = 30_000;

export type Outcome = "accepted" | "refused" | "retry";

export function backoffCeilingMs(attempt: number, baseMs = DEFAULT_BASE_MS, capMs = DEFAULT_CAP_MS): number {
  return Math.min(capMs, baseMs * 2 ** Math.min(Math.max(attempt - 1, 0), 40));
}

export function retryAfterMs(header: string | null | undefined, nowUnix: number, capMs = DEFAULT_CAP_MS): number | null {
  if (header == null) return null;
  const text = header.trim();
  if (/^[0-9]+$/.test(text)) return Math.min(Number(text) * 1000, capMs);
  // An HTTP date (IMF-fixdate); anything else is not understood.
  if (!/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(text)) return null;
  const when = Date.parse(text);
  if (Number.isNaN(when)) return null;
  return Math.min(Math.max(Math.round(when - nowUnix * 1000), 0), capMs);
}

export function delayMs(attempt: number, retryAfter: number | null, baseMs: number, capMs: number): number {
  if (retryAfter != null) return retryAfter;
  return Math.floor(Math.random() * (backoffCeilingMs(attempt, baseMs, capMs) + 1));
}

export function classify(status: number): Outcome {
  if (status >= 200 && status < 300) return "accepted";
  if (status === 408 || status === 429 || status >= 500) return "retry";
  return "refused";
}

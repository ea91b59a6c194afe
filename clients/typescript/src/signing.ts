// Signatures over the exact body bytes, as the edge verifies them: Control Tower's
// `X-CT-Signature: sha256=<hex HMAC-SHA256>` of the body (or of "{timestamp}.{body}" with
// `X-CT-Timestamp`), or Standard Webhooks (`webhook-id`, `webhook-timestamp`,
// `webhook-signature: v1,<base64 HMAC of "{id}.{timestamp}.{body}">`; a `whsec_` secret is
// base64-decoded first).
import { createHmac } from "node:crypto";

export type Scheme = "ct" | "ct-timestamp" | "standard-webhooks";
export const SCHEMES: readonly Scheme[] = ["ct", "ct-timestamp", "standard-webhooks"];

function key(secret: string): Buffer {
  if (secret.startsWith("whsec_")) {
    const encoded = secret.slice("whsec_".length);
    if (/^[A-Za-z0-9+/]*={0,2}$/.test(encoded)) return Buffer.from(encoded, "base64");
  }
  return Buffer.from(secret, "utf8");
}

function hmac(secret: string, ...parts: (string | Uint8Array)[]): Buffer {
  const mac = createHmac("sha256", key(secret));
  for (const part of parts) mac.update(part);
  return mac.digest();
}

export function sign(
  scheme: Scheme,
  secret: string,
  body: Uint8Array,
  options: { timestamp: number; messageId: string },
): Record<string, string> {
  switch (scheme) {
    case "ct":
      return { "X-CT-Signature": "sha256=" + hmac(secret, body).toString("hex") };
    case "ct-timestamp":
      return {
        "X-CT-Signature": "sha256=" + hmac(secret, `${options.timestamp}.`, body).toString("hex"),
        "X-CT-Timestamp": String(options.timestamp),
      };
    case "standard-webhooks":
      return {
        "webhook-id": options.messageId,
        "webhook-timestamp": String(options.timestamp),
        "webhook-signature":
          "v1," + hmac(secret, `${options.messageId}.${options.timestamp}.`, body).toString("base64"),
      };
    default:
      throw new Error(`unknown signature scheme ${String(scheme)}`);
  }
}

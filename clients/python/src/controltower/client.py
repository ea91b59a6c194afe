"""The client: sign, send, retry, and say what the edge answered."""

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from . import retry, signing
from .events import Event, events


class Refused(Exception):
    """The edge refused the request (a 4xx other than 408 and 429): retrying will not help."""

    def __init__(self, status: int, code: Optional[str], field: Optional[str], message: str):
        super().__init__(f"{status} {code}: {message}" + (f" (field {field})" if field else ""))
        self.status, self.code, self.field, self.message = status, code, field, message


class RetriesExhausted(Exception):
    """Every attempt met a retryable answer or a network error; the last one is given."""

    def __init__(self, attempts: int, last: str):
        super().__init__(f"gave up after {attempts} attempts; last: {last}")
        self.attempts, self.last = attempts, last


@dataclass
class Receipt:
    event_id: str
    topic: str
    partition: int
    offset: int
    duplicate: bool

    @staticmethod
    def of(answer: Dict[str, Any]) -> "Receipt":
        return Receipt(answer["eventId"], answer["topic"], answer["partition"], answer["offset"], answer["duplicate"])


class Client:
    """Sends events of one source to the edge.

    ``scheme`` is ``ct`` (``X-CT-Signature`` of the body), ``ct-timestamp`` (of
    ``"{timestamp}.{body}"``, with ``X-CT-Timestamp``) or ``standard-webhooks``.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        secret: str,
        source: str,
        *,
        scheme: str = "ct-timestamp",
        max_attempts: int = 8,
        base_ms: int = retry.DEFAULT_BASE_MS,
        cap_ms: int = retry.DEFAULT_CAP_MS,
        timeout_s: float = 10.0,
    ):
        if scheme not in signing.SCHEMES:
            raise ValueError(f"unknown signature scheme {scheme!r}")
        self.base_url = base_url.rstrip("/")
        self._token, self._secret = token, secret
        self.source, self.scheme = source, scheme
        self.max_attempts, self.base_ms, self.cap_ms, self.timeout_s = max_attempts, base_ms, cap_ms, timeout_s

    def __repr__(self) -> str:  # never print the token or the secret
        return f"Client({self.base_url!r}, source={self.source!r}, scheme={self.scheme!r})"

    def send(self, event: Event, *, traceparent: Optional[str] = None) -> Receipt:
        body = json.dumps(event.body(self.source), separators=(",", ":"), ensure_ascii=False).encode()
        answer = self._post("/events", body, event.event_id, traceparent)
        return Receipt.of(answer)

    def send_batch(self, batch: Sequence[Event], *, traceparent: Optional[str] = None) -> List[Receipt]:
        if not batch:
            return []
        document = [e.body(self.source) for e in batch]
        body = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
        answer = self._post("/events/batch", body, batch[0].event_id + "-batch", traceparent)
        return [Receipt.of(r) for r in answer["events"]]

    def _post(self, path: str, body: bytes, message_id: str, traceparent: Optional[str]) -> Dict[str, Any]:
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            # The same bytes every time; only the signature's timestamp moves.
            headers = {
                "Authorization": f"Bearer {self._token}",
                "Content-Type": "application/json",
                **signing.sign(self.scheme, self._secret, body, timestamp=int(time.time()), message_id=message_id),
            }
            if traceparent:
                headers["traceparent"] = traceparent
            request = urllib.request.Request(self.base_url + path, data=body, headers=headers, method="POST")
            retry_after = None
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return json.loads(response.read() or b"{}")
            except urllib.error.HTTPError as error:
                payload = error.read()
                status = error.code
                if retry.classify(status) == "refused":
                    detail = _error_detail(payload)
                    raise Refused(status, detail.get("code"), detail.get("field"), detail.get("message", "")) from None
                retry_after = retry.retry_after_ms(error.headers.get("Retry-After"), time.time(), self.cap_ms)
                last = f"HTTP {status} {_error_detail(payload).get('code') or ''}".strip()
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
                last = f"{type(error).__name__}: {error}"
            if attempt < self.max_attempts:
                time.sleep(retry.delay_ms(attempt, retry_after, self.base_ms, self.cap_ms) / 1000)
        raise RetriesExhausted(self.max_attempts, last)

    def heartbeat_every(self, period_s: float, system_id: str, **fields: Any) -> "Heartbeat":
        """Sends a heartbeat for ``system_id`` now and every ``period_s`` seconds in a daemon
        thread until ``stop()``; a failed heartbeat is kept in ``last_error``, never raised, and the next
        one is sent on time."""
        return Heartbeat(self, period_s, system_id, fields)


class Heartbeat:
    def __init__(self, client: Client, period_s: float, system_id: str, fields: Dict[str, Any]):
        self._stop = threading.Event()
        self.sent = 0
        self.last_error: Optional[Exception] = None

        def beat() -> None:
            while not self._stop.is_set():
                try:
                    client.send(events.system_heartbeat(system_id=system_id, **fields))
                    self.sent += 1
                except Exception as error:  # noqa: BLE001 - a heartbeat must never kill its thread
                    self.last_error = error
                self._stop.wait(period_s)

        self._thread = threading.Thread(target=beat, name=f"ct-heartbeat-{system_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _error_detail(payload: bytes) -> Dict[str, Any]:
    try:
        document = json.loads(payload)
    except ValueError:
        return {}
    error = document.get("error") if isinstance(document, dict) else None
    return error if isinstance(error, dict) else {}

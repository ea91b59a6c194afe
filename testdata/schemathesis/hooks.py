"""Schemathesis hooks for Control Tower (loaded through SCHEMATHESIS_HOOKS).

The edge refuses unsigned bodies with 401 before it looks at them, so without a signature every
generated event would stop at the first check. Requests to the edge's POST routes are signed
here, over the exact bytes sent (a `requests` auth hook runs after the body is serialised), so
the generated bodies reach validation. Nothing else is changed: bad tokens, headers and bodies
are still sent as generated.

CPython 3.11 keeps the AST constructor's recursion depth in per-interpreter state, so two
threads parsing at once (Hypothesis describes lambdas with `ast.parse`, and `--workers 2` runs
two threads) can fail with "SystemError: AST constructor recursion depth mismatch"
(python/cpython#106905). `ast.parse` is serialised here, which is all the workaround needs.
"""

import ast
import hashlib
import hmac
import os
import threading

import requests
import schemathesis

_AST_PARSE = ast.parse
_AST_LOCK = threading.Lock()


def _serialised_parse(*args, **kwargs):
    with _AST_LOCK:
        return _AST_PARSE(*args, **kwargs)


ast.parse = _serialised_parse

SECRET = os.environ.get("CT_SCHEMATHESIS_HMAC_SECRET", "dev-webhook-secret").encode()


class SignBody(requests.auth.AuthBase):
    def __call__(self, request):
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        request.headers["X-CT-Signature"] = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        return request


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.method.upper() == "POST" and case.operation.path.startswith("/events"):
        kwargs["auth"] = SignBody()

"""Generic webhook: POST the notification's JSON (documented in docs/alerts-notify.md), signed.

Headers: ``X-Poolwarden-Signature: sha256=<hex HMAC-SHA256 of the body with the channel's
secret>`` (when a secret is set), ``X-Poolwarden-Idempotency-Key`` (the same on every retry of a
notification), and an optional authorisation header. A 2xx is a delivery; 408, 429 and 5xx, a
timeout or a refused connection are retried; any other answer (4xx, a redirect) is not.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import urlsplit

import requests

from panel.notify.channels.base import Channel, DeliveryError, Field, FieldError, Message, SendResult, register

USER_AGENT = "poolwarden-notify/1"
RETRYABLE_STATUS = {408, 425, 429}


def body_bytes(payload: dict[str, Any]) -> bytes:
    """The exact bytes sent (and signed): compact JSON with sorted keys, the same on every attempt."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@register
class WebhookChannel(Channel):
    kind = "webhook"
    title = "Webhook"
    fields = (
        Field("url", "URL", kind="url", secret=True, required=True,
              help="where to POST; kept encrypted because such URLs often carry a token"),
        Field("secret", "Signing secret", secret=True,
              help="HMAC-SHA256 key: the body's signature goes in X-Poolwarden-Signature"),
        Field("authHeader", "Authorization header value", secret=True,
              help="sent as the header below, e.g. 'Bearer abc123'; empty: none"),
        Field("authHeaderName", "Authorization header name", default="Authorization"),
        Field("timeoutSeconds", "Timeout (s)", kind="int", default=10, minimum=1, maximum=60),
    )

    @classmethod
    def check(cls, settings, secrets) -> None:
        name = settings.get("authHeaderName", "Authorization")
        if not all(c.isalnum() or c == "-" for c in name):
            raise FieldError("authHeaderName", f"not an HTTP header name: {name!r}")
        if name.lower() in ("content-type", "content-length", "host", "x-poolwarden-signature",
                            "x-poolwarden-idempotency-key"):
            raise FieldError("authHeaderName", f"{name} is set by poolwarden itself")

    def describe(self) -> str:
        parts = urlsplit(self.secrets.get("url", ""))
        return f"POST {parts.scheme}://{parts.netloc}/…" if parts.netloc else "webhook"

    def send(self, message: Message) -> SendResult:
        body = body_bytes(message.payload)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "X-Poolwarden-Idempotency-Key": message.idempotency_key,
            "X-Poolwarden-Event": message.kind,
        }
        if self.secrets.get("secret"):
            headers["X-Poolwarden-Signature"] = signature(self.secrets["secret"], body)
        if self.secrets.get("authHeader"):
            headers[self.settings.get("authHeaderName") or "Authorization"] = self.secrets["authHeader"]
        timeout = float(self.settings.get("timeoutSeconds") or 10)
        try:
            response = requests.post(self.secrets["url"], data=body, headers=headers, timeout=timeout,
                                     allow_redirects=False)
        except requests.Timeout:
            raise DeliveryError(f"no answer within {timeout:g} s", retryable=True) from None
        except requests.ConnectionError as exc:
            raise DeliveryError(f"cannot connect: {_reason(exc)}", retryable=True) from None
        except requests.RequestException as exc:
            raise DeliveryError(f"request failed: {_reason(exc)}", retryable=False) from None
        code = response.status_code
        excerpt = response.text[:200].strip() if response.content else ""
        response.close()
        if 200 <= code < 300:
            return SendResult(code=code, detail=excerpt)
        retryable = code >= 500 or code in RETRYABLE_STATUS
        what = "redirect (not followed)" if 300 <= code < 400 else f"HTTP {code}"
        raise DeliveryError(f"{what}: {excerpt}" if excerpt else what, retryable=retryable, code=code)


def _reason(exc: Exception) -> str:
    """The innermost reason of a requests error, without the URL (which may carry a token)."""
    inner: BaseException = exc
    while inner.__context__ is not None and inner.__context__ is not inner:
        inner = inner.__context__
    text = str(getattr(inner, "reason", None) or inner)
    return text.split(": ", 1)[-1][:200] if "://" not in text else type(inner).__name__

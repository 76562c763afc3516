"""E-mail over SMTP: STARTTLS (default), implicit TLS ("ssl") or none, HTML and plain-text parts.

The subject names the severity and the counts ("[poolwarden] CRITICAL: 3 firing, 1 resolved -
PoolDown on pool-1"). The Message-ID is derived from the idempotency key, so a receiving system
can drop a duplicate too. SMTP 4xx replies, timeouts and refused connections are retried; 5xx
replies (a refused recipient, a failed login) and TLS certificate problems are not.
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

from panel.notify import render
from panel.notify.channels.base import Channel, DeliveryError, Field, FieldError, Message, SendResult, register

SECURITY = ("starttls", "ssl", "none")


@register
class EmailChannel(Channel):
    kind = "email"
    title = "E-mail (SMTP)"
    fields = (
        Field("smtpHost", "SMTP server", required=True, help="host name or address of the mail server"),
        Field("smtpPort", "Port", kind="int", default=587, minimum=1, maximum=65535,
              help="587 for STARTTLS, 465 for SSL, 25 for none"),
        Field("security", "Security", kind="choice", choices=SECURITY, default="starttls"),
        Field("username", "Username", help="empty: no login"),
        Field("password", "Password", secret=True),
        Field("from", "From", kind="email", required=True),
        Field("to", "To", kind="emails", required=True, help="one or more addresses, separated by commas"),
        Field("timeoutSeconds", "Timeout (s)", kind="int", default=15, minimum=1, maximum=120),
        Field("caFile", "CA file", kind="path", help="PEM file of the CA that signed the server's certificate, "
                                                       "if it is not a public one"),
    )

    @classmethod
    def check(cls, settings, secrets) -> None:
        if secrets.get("password") and not settings.get("username"):
            raise FieldError("username", "a password is set but no username")
        if settings.get("caFile") and settings.get("security", "starttls") == "none":
            raise FieldError("caFile", "only used with security starttls or ssl")

    def describe(self) -> str:
        to = self.settings.get("to") or []
        more = f" +{len(to) - 1}" if len(to) > 1 else ""
        return (f"{to[0] if to else '?'}{more} via {self.settings.get('smtpHost')}:{self.settings.get('smtpPort', 587)}"
                f" ({self.settings.get('security', 'starttls')})")

    def build(self, message: Message) -> EmailMessage:
        payload = message.payload
        mail = EmailMessage()
        mail["Subject"] = render.subject(payload)
        mail["From"] = self.settings["from"]
        mail["To"] = ", ".join(self.settings["to"])
        mail["Date"] = formatdate(usegmt=True)
        digest = hashlib.sha256(message.idempotency_key.encode()).hexdigest()[:32]
        mail["Message-ID"] = f"<{digest}@poolwarden>"
        mail["X-Poolwarden-Idempotency-Key"] = message.idempotency_key
        mail.set_content(render.text(payload))
        mail.add_alternative(render.html(payload), subtype="html")
        return mail

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.settings.get("caFile") or None)

    def send(self, message: Message) -> SendResult:
        mail = self.build(message)
        host, port = self.settings["smtpHost"], int(self.settings.get("smtpPort") or 587)
        security = self.settings.get("security") or "starttls"
        timeout = float(self.settings.get("timeoutSeconds") or 15)
        where = f"{host}:{port}"
        try:
            if security == "ssl":
                smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=self._tls())
            else:
                smtp = smtplib.SMTP(host, port, timeout=timeout)
            try:
                smtp.ehlo()
                if security == "starttls":
                    smtp.starttls(context=self._tls())
                    smtp.ehlo()
                if self.settings.get("username"):
                    smtp.login(self.settings["username"], self.secrets.get("password", ""))
                refused = smtp.send_message(mail)
            finally:
                try:
                    smtp.quit()
                except (smtplib.SMTPException, OSError):
                    smtp.close()
        except smtplib.SMTPNotSupportedError:
            raise DeliveryError(f"{where} does not offer STARTTLS: set security to 'ssl' or 'none'",
                                retryable=False) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"{where} refused the login: {_reply(exc)}", retryable=False, code=exc.smtp_code) \
                from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            retryable = all(400 <= c < 500 for c in codes)
            first = next(iter(exc.recipients.items()))
            raise DeliveryError(f"{where} refused every recipient ({first[0]}: {first[1][0]} "
                                f"{_text(first[1][1])})", retryable=retryable, code=codes[0] if codes else None) \
                from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(f"{where} answered {_reply(exc)}", retryable=400 <= exc.smtp_code < 500,
                                code=exc.smtp_code) from None
        except ssl.SSLError as exc:
            raise DeliveryError(f"TLS with {where} failed: {exc.reason or exc}", retryable=False) from None
        except TimeoutError:
            raise DeliveryError(f"{where} did not answer within {timeout:g} s", retryable=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"cannot deliver through {where}: {exc}", retryable=True) from None
        detail = f"accepted by {where}"
        if refused:
            detail += f"; refused: {', '.join(sorted(refused))}"
        return SendResult(code=250, detail=detail)


def _text(value: bytes | str) -> str:
    return (value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value))[:200]


def _reply(exc: smtplib.SMTPResponseException) -> str:
    return f"{exc.smtp_code} {_text(exc.smtp_error)}"

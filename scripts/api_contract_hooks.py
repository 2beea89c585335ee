"""schemathesis hooks for scripts/api-contract: signs the generated Twilio webhooks.

The server runs with a platform Twilio account (VZ_TWILIO_ACCOUNT_SID and
VZ_TWILIO_AUTH_TOKEN), so a request from that account, signed as Twilio signs (HMAC-SHA1 of the URL and the sorted form fields, base64) gets
past the signature check into the handler. Bodies that are not a form of strings (the
negative cases) go unsigned and must be refused.
"""

import base64
import hashlib
import hmac
import os

import schemathesis

BASE_URL = os.environ["VZ_BASE_URL"]
ACCOUNT_SID = os.environ["VZ_TWILIO_ACCOUNT_SID"]
AUTH_TOKEN = os.environ["VZ_TWILIO_AUTH_TOKEN"]


def twilio_signature(url, fields):
    data = url + "".join(name + value for name, value in sorted(fields))
    digest = hmac.new(AUTH_TOKEN.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@schemathesis.hook
def before_call(context, case, kwargs):
    if not case.path.startswith("/webhooks/") or not isinstance(case.body, dict):
        return
    # requests leaves out fields whose value is None.
    fields = [(k, v) for k, v in case.body.items() if v is not None]
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in fields):
        return
    # The server picks the account to verify against by AccountSid.
    case.body = dict(case.body, AccountSid=ACCOUNT_SID)
    fields = [(k, v) for k, v in case.body.items() if v is not None]
    headers = dict(case.headers or {})
    headers["X-Twilio-Signature"] = twilio_signature(BASE_URL + case.path, fields)
    case.headers = headers

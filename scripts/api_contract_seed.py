"""Seeds a fresh `vocalized serve` for scripts/api-contract and prints what the
schemathesis run needs as KEY=value lines (tokens, ids for path parameters).

Usage: python3 api_contract_seed.py BASE_URL ADMIN_EMAIL ADMIN_PASSWORD
The admin must exist already (`vocalized admin create`). Standard library only.
"""

import json
import sys
import urllib.error
import urllib.request

BASE, ADMIN_EMAIL, ADMIN_PASSWORD = sys.argv[1:4]
PASSWORD = "contract-test-password-1"


def call(method, path, body=None, token=None, expect=(200, 201)):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, text = resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    if status not in expect:
        sys.exit(f"seed: {method} {path} answered {status}: {text}")
    return json.loads(text) if text else None


def login(path, email, password):
    return call("POST", path, {"email": email, "password": password})["token"]


out = {}
email = "contract-owner@example.com"
call("POST", "/api/v1/auth/signup", {"email": email, "password": PASSWORD, "name": "Contract Owner"})
user = login("/api/v1/auth/login", email, PASSWORD)
me = call("GET", "/api/v1/auth/me", token=user)
out["VZ_USER_TOKEN"] = user
out["VZ_USER_ID"] = me["user"]["id"]
# A second session for POST /auth/logout, which ends the session it is called with.
out["VZ_LOGOUT_USER_TOKEN"] = login("/api/v1/auth/login", email, PASSWORD)


def workspace(name):
    return call("POST", "/api/v1/workspaces", {"name": name}, user)["workspace"]["id"]


# One workspace the run works in, one for DELETE /workspaces/{id} to delete, one for the
# admin operations (which may suspend it).
out["VZ_WORKSPACE_ID"] = ws = workspace("Contract")
out["VZ_DOOMED_WORKSPACE_ID"] = workspace("Contract doomed")
out["VZ_ADMIN_WORKSPACE_ID"] = workspace("Contract admin")

number = call(
    "POST",
    f"/api/v1/workspaces/{ws}/phone-numbers",
    {"phone_number": "+15005550006", "friendly_name": "Contract line"},
    user,
)["phone_number"]
out["VZ_NUMBER_ID"] = number["id"]
agent = call(
    "POST",
    f"/api/v1/workspaces/{ws}/agents",
    {"name": "Contract agent", "voice_provider": "echo"},
    user,
)["agent"]
out["VZ_AGENT_ID"] = agent["id"]
out["VZ_WIDGET_KEY"] = agent["widget_public_key"]
invitation = call(
    "POST",
    f"/api/v1/workspaces/{ws}/members",
    {"email": "contract-invitee@example.com", "role": "member"},
    user,
)["invitation"]
out["VZ_INVITATION_ID"] = invitation["id"]

out["VZ_ADMIN_TOKEN"] = login("/api/v1/admin/auth/login", ADMIN_EMAIL, ADMIN_PASSWORD)
out["VZ_LOGOUT_ADMIN_TOKEN"] = login("/api/v1/admin/auth/login", ADMIN_EMAIL, ADMIN_PASSWORD)

for key, value in out.items():
    print(f"{key}={value}")

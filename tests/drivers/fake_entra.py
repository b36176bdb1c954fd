"""A local HTTPS stub of Microsoft Entra ID's token endpoint (and ARM's subscription read).

It serves what MSAL asks for with instance discovery off: the tenant's OpenID
configuration, then the client-credentials token endpoint, answering a wrong
secret with 401 invalid_client (AADSTS7000215) and an unknown tenant with 400
(AADSTS90002), as Entra does. `GET /subscriptions/{id}` answers like ARM.
"""
from __future__ import annotations

import json
import ssl
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from tests.drivers.fake_arm import self_signed_certificate


class FakeEntra(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, directory: Path, *, tenant_id: str, client_id: str, client_secret: str):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.cert_path, key_path = self_signed_certificate(directory, stem="entra-stub")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, key_path)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.tenant_id, self.client_id, self.client_secret = tenant_id, client_id, client_secret
        self.subscriptions: dict[str, str] = {}  # id -> state
        self.issued: set[str] = set()
        self.requests: list[tuple[str, str, dict]] = []
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"

    @property
    def authority(self) -> str:
        return self.url

    def start(self) -> "FakeEntra":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request, client_address) -> None:
        pass


class _Handler(BaseHTTPRequestHandler):
    server: FakeEntra
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _send(self, code: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):
        server, path = self.server, urlparse(self.path).path
        server.requests.append(("GET", path, {}))
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["subscriptions"] and len(parts) == 2:
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            if token not in server.issued:
                return self._send(401, {"error": {"code": "InvalidAuthenticationToken", "message": "bad token"}})
            state = server.subscriptions.get(parts[1])
            if state is None:
                return self._send(404, {"error": {"code": "SubscriptionNotFound",
                                                  "message": f"The subscription '{parts[1]}' could not be found."}})
            return self._send(200, {"id": path, "subscriptionId": parts[1], "displayName": "tenant", "state": state})
        if len(parts) >= 2 and parts[-2:] == [".well-known", "openid-configuration"]:
            tenant = parts[0]
            base = f"{server.url}/{tenant}"
            return self._send(200, {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "issuer": f"{base}/v2.0", "jwks_uri": f"{base}/discovery/v2.0/keys",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                          "client_secret_basic"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            })
        return self._send(404, {"error": "not_found"})

    def do_POST(self):
        server = self.server
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        path = urlparse(self.path).path
        server.requests.append(("POST", path, {k: v for k, v in form.items() if k != "client_secret"}))
        tenant = path.strip("/").split("/")[0]
        if tenant != server.tenant_id:
            return self._send(400, {"error": "invalid_request", "error_codes": [90002],
                                    "error_description": f"AADSTS90002: Tenant '{tenant}' not found."})
        if form.get("client_id") != server.client_id:
            return self._send(400, {"error": "unauthorized_client", "error_codes": [700016],
                                    "error_description": f"AADSTS700016: Application with identifier "
                                                         f"'{form.get('client_id')}' was not found."})
        if form.get("client_secret") != server.client_secret:
            return self._send(401, {"error": "invalid_client", "error_codes": [7000215],
                                    "error_description": "AADSTS7000215: Invalid client secret provided. Ensure "
                                                         "the secret being sent in the request is the client "
                                                         "secret value, not the client secret ID."})
        token = uuid.uuid4().hex
        server.issued.add(token)
        return self._send(200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                                "access_token": token})

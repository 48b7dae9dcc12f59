#!/usr/bin/env python3
"""db_app.py: log in to PostgreSQL with a password read from SPIKE Nexus over SPIFFE mTLS.

The Python twin of examples/db-app (Rust), with off-the-shelf PyPI packages only:
`spiffe` and `spiffe-tls` (py-spiffe) for identity and mTLS, `psycopg` for PostgreSQL.

The flow:
1. Identity. `spiffe.X509Source` fetches our X.509-SVID and trust bundle from the SPIFFE
   agent's Workload API (SPIFFE_ENDPOINT_SOCKET) and keeps them fresh. The agent decides who
   we are by attesting this process, so the app needs no token or password to start with.
2. Nexus. `spiffetls.SpiffeSSLContext` lets the standard `http.client` present that SVID and
   verify Nexus's certificate chain against the bundle. It checks no name, so before sending
   anything we check that the server's SPIFFE ID is Nexus's (spiffe://<td>/spike/nexus).
   Nexus lets us read the secret if a policy grants our SPIFFE ID `read` on it.
3. Database. psycopg logs in as the secret's `username` with its `password` (SCRAM) and runs
   `SELECT current_user`.
4. Rotation (--watch). Re-read the secret every --interval; when it changes, log in with the
   new password, then close the old connection. SIGINT or SIGTERM ends the loop.

stdout carries only the outcome (`connected as <user>`, `reconnected as <user> (secret
version N)`); diagnostics go to stderr. The password is never printed.
"""

import argparse
import http.client
import json
import os
import signal
import sys
import threading
import urllib.parse

import psycopg
from cryptography import x509
from spiffe import SpiffeId, X509Source
from spiffetls import SpiffeSSLContext


class AppError(Exception):
    """A failure with a message that says what to do next."""


def parse_duration(text):
    """`300ms`, `2s`, `1m` or a plain number of seconds, as seconds."""
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * scale
    return float(text)


def parse_args():
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nexus-url", default=env("SPIKE_NEXUS_API_URL", "https://localhost:8553"))
    p.add_argument("--trust-domain", default=env("SPIKE_TRUST_ROOT_NEXUS"),
                   help="Nexus's trust domain (default: our own)")
    p.add_argument("--secret-path", default=env("DB_APP_SECRET_PATH", "db/password"))
    p.add_argument("--key", default=env("DB_APP_SECRET_KEY", "password"),
                   help="the secret's key holding the password")
    p.add_argument("--username-key", default=env("DB_APP_USERNAME_KEY", "username"))
    p.add_argument("--db-host", default=env("PGHOST", "127.0.0.1"))
    p.add_argument("--db-port", type=int, default=int(env("PGPORT", "5432")))
    p.add_argument("--db-name", default=env("PGDATABASE", "postgres"))
    p.add_argument("--watch", action="store_true",
                   help="keep running and reconnect when the secret changes")
    p.add_argument("--interval", type=parse_duration, default=2.0,
                   help="how often --watch re-reads the secret (300ms, 2s, 1m)")
    p.add_argument("--svid-timeout", type=parse_duration, default=10.0)
    return p.parse_args()


class Credentials:
    """A PostgreSQL login from Nexus. `repr` never shows the password."""

    def __init__(self, username, password, version):
        self.username = username
        self.password = password
        self.version = version

    def same_as(self, other):
        return (self.username, self.password, self.version) == (
            other.username, other.password, other.version)

    def __repr__(self):
        return f"Credentials(username={self.username!r}, password=[REDACTED], version={self.version})"


class Nexus:
    """Reads secrets from Nexus over mTLS with our SVID (SPIKE's v1 API)."""

    def __init__(self, source, url, trust_domain):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise AppError(f"invalid Nexus URL {url!r}: expected https://host:port")
        self.url = url
        self.host, self.port = parts.hostname, parts.port or 443
        self.nexus_id = f"spiffe://{trust_domain}/spike/nexus"
        # Presents our SVID and verifies the server's chain against the bundle, both kept
        # fresh from the X509Source as they rotate.
        self.context = SpiffeSSLContext(source)

    def _check_peer(self, sock):
        """Accepts only Nexus's SPIFFE ID (or one below it), as the Rust client does."""
        try:
            cert = x509.load_der_x509_certificate(sock.getpeercert(binary_form=True))
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            (uri,) = san.get_values_for_type(x509.UniformResourceIdentifier)
            peer = str(SpiffeId(uri))
        except Exception:  # no certificate, no SAN, not exactly one URI, not a SPIFFE ID
            peer = "not an X509-SVID"
        if peer != self.nexus_id and not peer.startswith(self.nexus_id + "/"):
            raise AppError(
                f"the server at {self.url} is {peer}, not Nexus ({self.nexus_id}); check "
                "--trust-domain (SPIKE_TRUST_ROOT_NEXUS) and --nexus-url (SPIKE_NEXUS_API_URL)"
            )

    def get_secret(self, path):
        """The current version of `path`: `{"data": {...}, "version": N}`."""
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=30)
        try:
            conn.connect()
            self._check_peer(conn.sock)
            conn.request("POST", "/v1/store/secrets?action=get", body=json.dumps({"path": path}),
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as e:
            raise AppError(f"cannot reach Nexus at {self.url}: {e}") from None
        finally:
            conn.close()
        if response.status == 200:
            return json.loads(body)
        try:
            error = json.loads(body)
        except ValueError:
            error = {}
        raise NexusError(response.status, error.get("err", ""), error.get("message", ""))


class NexusError(AppError):
    """Nexus answered with an error code."""

    def __init__(self, status, code, message):
        super().__init__(f"{code or 'HTTP ' + str(status)}: {message or code}")
        self.status, self.code = status, code


def nexus_trust_domain(configured, own):
    """The configured trust domain (SPIKE allows a list: ours wins if listed, else the
    first), or our own when none is configured."""
    listed = [td.strip() for td in (configured or "").split(",") if td.strip()]
    return listed[0] if listed and own not in listed else own


def read_credentials(nexus, args, own_id):
    try:
        secret = nexus.get_secret(args.secret_path)
    except NexusError as e:
        if e.code == "access_unauthorized" or e.status in (401, 403):
            raise AppError(
                f"not authorised: Nexus does not let {own_id} read secret `{args.secret_path}` "
                f"({e}). Ask an admin to apply a policy granting this SPIFFE ID `read` on it."
            ) from None
        raise AppError(f"cannot read secret `{args.secret_path}` from Nexus: {e}") from None
    data = secret.get("data", {})
    for key in (args.username_key, args.key):
        if key not in data:
            raise AppError(f"secret `{args.secret_path}` has no key `{key}`")
    return Credentials(data[args.username_key], data[args.key], secret.get("version", 0))


def log_in(args, creds):
    """Logs in to PostgreSQL; returns the connection and the server's `current_user`."""
    try:
        conn = psycopg.connect(host=args.db_host, port=args.db_port, dbname=args.db_name,
                               user=creds.username, password=creds.password,
                               application_name="db_app.py", connect_timeout=10)
    except psycopg.OperationalError as e:
        raise AppError(
            f"logging in to PostgreSQL at {args.db_host}:{args.db_port} (database "
            f"{args.db_name}) as {creds.username} with the password from secret "
            f"`{args.secret_path}` version {creds.version}: {e}".strip()
        ) from None
    (user,) = conn.execute("SELECT current_user").fetchone()
    return conn, user


def watch(args, nexus, own_id, current, conn):
    """Follows the secret until SIGINT or SIGTERM, keeping the current connection whenever a
    read or a login fails (the database and Nexus are updated a moment apart)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"db_app.py: watching secret `{args.secret_path}` every {args.interval}s",
          file=sys.stderr, flush=True)
    while not stop.wait(args.interval):
        try:
            fresh = read_credentials(nexus, args, own_id)
            if fresh.same_as(current):
                continue
            new_conn, user = log_in(args, fresh)
        except AppError as e:
            print(f"db_app.py: {e}; keeping the current connection", file=sys.stderr, flush=True)
            continue
        print(f"reconnected as {user} (secret version {fresh.version})", flush=True)
        conn.close()
        conn, current = new_conn, fresh
    print("db_app.py: shutting down", file=sys.stderr, flush=True)
    conn.close()


def main():
    args = parse_args()
    try:
        source = X509Source(timeout_in_seconds=args.svid_timeout)
    except Exception as e:  # py-spiffe raises several error types here
        raise AppError(
            f"no SVID from the Workload API ({e}): is SPIFFE_ENDPOINT_SOCKET set, and is "
            "this interpreter registered with the SPIFFE server?"
        ) from None
    try:
        own_id = source.get_x509_context().default_svid.spiffe_id
        trust_domain = nexus_trust_domain(args.trust_domain, own_id.trust_domain.name)
        nexus = Nexus(source, args.nexus_url, trust_domain)
        creds = read_credentials(nexus, args, own_id)
        conn, user = log_in(args, creds)
        print(f"connected as {user}", flush=True)
        if args.watch:
            watch(args, nexus, own_id, creds, conn)
        else:
            conn.close()
    finally:
        source.close()  # also closes the Workload API client it created


if __name__ == "__main__":
    try:
        main()
    except AppError as e:
        print(f"db_app.py: {e}", file=sys.stderr)
        sys.exit(1)

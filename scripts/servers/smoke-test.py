#!/usr/bin/python3
"""Smoke test of the servers started by `scripts/test-servers start`.

Usage: /usr/bin/python3 scripts/servers/smoke-test.py   (reads $DIR/env)

For every instance: plain login, implicit TLS (Dovecot) and STARTTLS, both
verified against the test CA; two fresh users; CREATE of a folder with a
modified-UTF-7 name; APPEND with flags and an INTERNALDATE; FETCH back
byte-for-byte (including 8-bit header bytes); post-login CAPABILITY checks.
For Cyrus also the JMAP session over HTTP Basic auth, and Mailbox/get after
`test-servers cyrus-user`.  Exits non-zero on the
first failure.  Standard library only.
"""

import base64
import datetime
import imaplib
import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid

DIR = os.environ.get("MAILREPLICA_SERVERS_DIR", "/var/tmp/mailreplica-servers")


def load_env():
    env = {}
    with open(os.path.join(DIR, "env")) as f:
        for line in f:
            m = re.match(r"export (\w+)=(.*)", line.strip())
            if m:
                env[m.group(1)] = m.group(2).strip("'\"")
    return env


ENV = load_env()
CTX = ssl.create_default_context(cafile=ENV["MR_CA_FILE"])
FOLDER = "Donn&AOk-es"
MESSAGE = (
    b"From: Test <test@example.org>\r\n"
    b"To: Someone <someone@example.org>\r\n"
    b"Subject: caf\xc3\xa9 8-bit header\r\n"
    b"Date: Mon, 02 Jan 2023 10:00:00 +0000\r\n"
    b"Message-ID: <smoke-%s@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Bonjour, donn\xc3\xa9es.\r\n"
    b"Second line.\r\n"
)
INTERNALDATE = '"02-Jan-2023 11:22:33 +0100"'


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def caps_after_login(conn):
    typ, data = conn.capability()
    check(typ == "OK", "CAPABILITY failed")
    return set(data[0].decode().upper().split())


def exercise(conn, label, expect_condstore):
    caps = caps_after_login(conn)
    if expect_condstore is True:
        check({"CONDSTORE", "QRESYNC"} <= caps, f"{label}: CONDSTORE/QRESYNC missing: {caps}")
    elif expect_condstore is False:
        check(not ({"CONDSTORE", "QRESYNC"} & caps), f"{label}: CONDSTORE/QRESYNC advertised: {caps}")
    typ, data = conn.create(FOLDER)
    check(typ == "OK", f"{label}: CREATE {FOLDER}: {data}")
    typ, data = conn.list('""', "*")
    check(typ == "OK" and any(FOLDER.encode() in d for d in data), f"{label}: LIST lacks {FOLDER}: {data}")
    msg = MESSAGE % uuid.uuid4().hex.encode()
    typ, data = conn.append(FOLDER, r"(\Seen $Custom)", INTERNALDATE, msg)
    check(typ == "OK", f"{label}: APPEND: {data}")
    typ, data = conn.select(FOLDER)
    check(typ == "OK" and data[0] == b"1", f"{label}: SELECT: {data}")
    typ, data = conn.fetch("1", "(FLAGS INTERNALDATE BODY.PEEK[])")
    check(typ == "OK", f"{label}: FETCH: {data}")
    meta, body = data[0]
    check(body == msg, f"{label}: FETCHed bytes differ:\n{body!r}\n{msg!r}")
    check(b"\\Seen" in meta and b"$Custom" in meta, f"{label}: flags: {meta}")
    # Servers may present the same instant in their own time zone.
    m = re.search(rb'INTERNALDATE "([^"]+)"', meta)
    got = m and datetime.datetime.strptime(m.group(1).decode(), "%d-%b-%Y %H:%M:%S %z")
    want = datetime.datetime.strptime(INTERNALDATE.strip('"'), "%d-%b-%Y %H:%M:%S %z")
    check(got == want, f"{label}: internaldate: {meta}")
    conn.logout()


def run_instance(label, port, tls_port, expect_condstore):
    users = [f"smoke-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    # 1. plain, user 1
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login(users[0], "test")
    exercise(c, f"{label}/plain/{users[0]}", expect_condstore)
    # 2. STARTTLS on the plain port, user 2, hostname check against the IP SAN
    c = imaplib.IMAP4("127.0.0.1", port)
    c.starttls(ssl_context=CTX)
    c.login(users[1], "test")
    exercise(c, f"{label}/starttls/{users[1]}", expect_condstore)
    # 3. implicit TLS, with the DNS SAN "localhost"
    if tls_port:
        c = imaplib.IMAP4_SSL("localhost", int(tls_port), ssl_context=CTX)
        c.login(f"smoke-{uuid.uuid4().hex[:10]}", "test")
        exercise(c, f"{label}/imaps", expect_condstore)
    # 4. wrong password is refused
    c = imaplib.IMAP4("127.0.0.1", port)
    try:
        c.login(users[0], "wrong")
        raise AssertionError(f"{label}: wrong password accepted")
    except imaplib.IMAP4.error:
        pass
    print(f"ok  {label}")


def run_jmap(port):
    user = f"smoke-{uuid.uuid4().hex[:10]}"
    req = urllib.request.Request(f"http://127.0.0.1:{port}/.well-known/jmap")
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:test".encode()).decode())
    with urllib.request.urlopen(req, timeout=10) as r:  # follows the redirect to /jmap/
        session = json.load(r)
    check("urn:ietf:params:jmap:mail" in session.get("capabilities", {}), f"JMAP session: {session}")
    check(session.get("username") == user, f"JMAP username: {session.get('username')}")
    # A JMAP request alone does not create the account: cyrus-user does.
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test-servers")
    subprocess.run([script, "cyrus-user", user], check=True)
    body = json.dumps({
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
        "methodCalls": [["Mailbox/get", {"accountId": user, "properties": ["name", "role"]}, "0"]],
    }).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{session['apiUrl']}", data=body)
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:test".encode()).decode())
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        resp = json.load(r)
    name, result, _ = resp["methodResponses"][0]
    check(name == "Mailbox/get", f"JMAP Mailbox/get: {resp}")
    roles = sorted(m["role"] for m in result["list"] if m.get("role"))
    check(roles == ["archive", "drafts", "inbox", "junk", "sent", "trash"], f"JMAP roles: {roles}")
    print(f"ok  cyrus/jmap (apiUrl {session.get('apiUrl')}, roles {roles})")


def main():
    t = time.time()
    run_instance("dovecot-primary", int(ENV["MR_DOVECOT_PRIMARY_PORT"]), ENV["MR_DOVECOT_PRIMARY_TLS_PORT"], True)
    run_instance("dovecot-recovery", int(ENV["MR_DOVECOT_RECOVERY_PORT"]), ENV["MR_DOVECOT_RECOVERY_TLS_PORT"], True)
    run_instance("dovecot-nocondstore", int(ENV["MR_DOVECOT_NOCONDSTORE_PORT"]),
                 ENV.get("MR_DOVECOT_NOCONDSTORE_TLS_PORT"), False)
    run_instance("cyrus", int(ENV["MR_CYRUS_IMAP_PORT"]), None, True)
    run_jmap(int(ENV["MR_CYRUS_HTTP_PORT"]))
    print(f"all ok in {time.time() - t:.2f} s")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)

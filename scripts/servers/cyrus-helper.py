#!/usr/bin/python3
"""Side services for the test Cyrus instance (started by scripts/test-servers).

Two jobs, both in one small process so that there is a single pid to stop:

1. A saslauthd-protocol responder on a unix socket. Cyrus is configured with
   `sasl_pwcheck_method: saslauthd` and `sasl_saslauthd_path` pointing at this
   socket, so every plaintext check (IMAP LOGIN / AUTHENTICATE PLAIN, HTTP Basic
   for JMAP) lands here. It answers OK for *any* user name whose password is
   "test", which gives the tests fresh accounts on demand (Cyrus then creates
   the INBOX on first login because of `autocreate_quota`). Debian's libsasl2 is
   built without the `alwaystrue` pwcheck method, hence this stand-in.

   Protocol (libsasl2 lib/checkpw.c, saslauthd_verify_password): the client
   sends four counted strings - login, password, service, realm - each as a
   16-bit big-endian length followed by the bytes, and reads one counted
   string back; an answer starting with "OK" means success.

2. Optionally (--syslog PATH), a syslog sink: Cyrus only logs through
   syslog(3), i.e. to /dev/log. When the machine has no syslog daemon the
   script asks us to bind /dev/log ourselves and append every datagram to a
   log file, so Cyrus errors are visible. An existing, live /dev/log is never
   touched; a dead socket left behind by a killed sink is replaced.

Only standard-library modules from python3-minimal are used.
"""

import argparse
import errno
import os
import signal
import socket
import stat
import struct
import sys
import threading
import time

PASSWORD = b"test"


def log(msg):
    sys.stderr.write(time.strftime("%Y-%m-%d %H:%M:%S ") + msg + "\n")
    sys.stderr.flush()


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError("short read")
        buf += chunk
    return buf


def recv_counted(conn):
    (length,) = struct.unpack("!H", recv_exact(conn, 2))
    return recv_exact(conn, length)


def send_counted(conn, data):
    conn.sendall(struct.pack("!H", len(data)) + data)


def handle_sasl(conn):
    try:
        conn.settimeout(10)
        login = recv_counted(conn)
        password = recv_counted(conn)
        service = recv_counted(conn)
        _realm = recv_counted(conn)
        if login and password == PASSWORD:
            send_counted(conn, b"OK")
        else:
            log("saslauthd: refused login %r (service %r)" % (login, service))
            send_counted(conn, b"NO bad password (test servers accept only 'test')")
    except Exception as e:  # a broken client must not take the helper down
        log("saslauthd: request failed: %s" % e)
    finally:
        conn.close()


def serve_sasl(sock):
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=handle_sasl, args=(conn,), daemon=True).start()


def bind_unix(path, kind, mode):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, kind)
    s.bind(path)
    os.chmod(path, mode)
    return s


def syslog_path_is_live(path):
    """True if something answers on the datagram socket at path."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(path)
        return True
    except OSError as e:
        if e.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        return True  # something odd is there: leave it alone
    finally:
        probe.close()


def serve_syslog(sock, logfile):
    with open(logfile, "ab", buffering=0) as out:
        while True:
            data = sock.recv(65536)
            line = data.rstrip(b"\n\0")
            out.write(time.strftime("%Y-%m-%d %H:%M:%S ").encode() + line + b"\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sasl-socket", required=True)
    ap.add_argument("--syslog", help="datagram socket to bind (e.g. /dev/log)")
    ap.add_argument("--syslog-file")
    ap.add_argument("--pidfile", required=True)
    args = ap.parse_args()

    created = []  # (path, inode) of sockets we own, removed on exit

    sasl = bind_unix(args.sasl_socket, socket.SOCK_STREAM, 0o666)
    sasl.listen(64)
    created.append((args.sasl_socket, os.stat(args.sasl_socket).st_ino))

    syslog_sock = None
    if args.syslog:
        p = args.syslog
        if os.path.lexists(p):
            st = os.lstat(p)
            if stat.S_ISSOCK(st.st_mode) and not syslog_path_is_live(p):
                log("syslog: replacing dead socket %s" % p)
            else:
                log("syslog: %s exists and is live; not binding it" % p)
                p = None
        if p:
            syslog_sock = bind_unix(p, socket.SOCK_DGRAM, 0o666)
            created.append((p, os.stat(p).st_ino))
            log("syslog: listening on %s, writing to %s" % (p, args.syslog_file))

    def cleanup():
        for path, ino in created:
            try:
                # Only remove the socket if it is still the one we bound.
                if os.lstat(path).st_ino == ino:
                    os.unlink(path)
            except OSError:
                pass
        try:
            os.unlink(args.pidfile)
        except OSError:
            pass
        os._exit(0)

    # Serve from threads that have TERM/INT blocked (they inherit the mask);
    # the main thread only waits for those signals, so a stop is immediate
    # (a handler would run only when the main thread next ran Python code).
    stop_signals = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    threading.Thread(target=serve_sasl, args=(sasl,), daemon=True).start()
    if syslog_sock is not None:
        threading.Thread(target=serve_syslog, args=(syslog_sock, args.syslog_file),
                         daemon=True).start()

    with open(args.pidfile + ".tmp", "w") as f:
        f.write("%d\n" % os.getpid())
    os.rename(args.pidfile + ".tmp", args.pidfile)
    log("ready (sasl socket %s)" % args.sasl_socket)

    sig = signal.sigwait(stop_signals)
    log("stopping on signal %d" % sig)
    cleanup()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Helper for scripts/bench (Python 3 standard library only).

    bench-helper.py gen DIR --seed S --messages N
        Write the corpus for (S, N) into DIR (skipped if DIR/complete exists):
          DIR/maildir/   a Maildir++ tree (LAYOUT=fs, one directory per folder, INBOX
                         included) that `doveadm import` loads; flags and keywords in the
                         file names (keywords: dovecot-keywords), INTERNALDATE = mtime;
          DIR/delta/     the 1 % of new messages of scenario 3 (NNNNNN.eml) and
                         delta/index.json (folder, flags, internaldate of each);
          DIR/corpus.json  counts and bytes (total, per folder).
        Deterministic: message i depends only on (S, i).
    bench-helper.py changes --port P --user U --corpus DIR --seed S
        Apply scenario 3 to account U: 1 % of the messages get \\Seen and \\Flagged toggled,
        another 1 % are expunged, the delta messages are appended.  Deterministic from S
        (the selection is made on the sorted (folder, UID) list, identical on identical
        accounts).  Prints a JSON summary.
    bench-helper.py rename --port P --user U --from A --to B
        RENAME A to B (prints the folder's message count and bytes as JSON).
    bench-helper.py report --results FILE.jsonl --meta FILE.json --corpus corpus.json --out FILE.json
        Print the table and write the JSON results.
    bench-helper.py verify-summary VERIFY.json
        One line summing up the differences `mailreplica verify --json` found.
"""

import argparse
import base64
import imaplib
import json
import math
import os
import random
import sys
import time

GENERATOR_VERSION = 1

# (name, share).  Names are Unicode; on disk and on the wire they are in modified UTF-7.
FOLDERS = [
    ("INBOX", 0.24),
    ("Sent", 0.10),
    ("Archive", 0.04),
    ("Archive/2023", 0.14),
    ("Archive/2024", 0.14),
    ("Lists/rust-users", 0.09),
    ("Lists/debian-devel", 0.09),
    ("Projects/mailreplica", 0.07),
    ("Receipts", 0.05),
    ("Reçus", 0.04),
]
RENAME_FROM = "Projects/mailreplica"
RENAME_TO = "Projects/mailreplica-2024"

KEYWORDS = ["$Forwarded", "$label1"]   # letters a, b in dovecot-keywords
T0 = 1672531200          # 2023-01-01T00:00:00Z
SPAN = 2 * 365 * 86400   # two years of mail

FIRST = ["Alice", "Bob", "Chloé", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas",
         "Katarzyna", "Liam", "María", "Noah", "Olga", "Pierre", "Quentin", "Rosa", "Sven",
         "Tomás", "Ursula", "Viktor", "Wen", "Yuki", "Zoë"]
LAST = ["Martin", "Bernard", "Schmidt", "Nowak", "García", "Rossi", "Jensen", "Smith", "Dubois",
        "Müller", "Kowalski", "Silva", "Tanaka", "Novak", "Larsen", "Petit", "Moreau", "Lopez"]
DOMAINS = ["example.org", "example.com", "example.net", "mail.example.org", "corp.example.com",
           "lists.example.org", "shop.example.net", "bank.example.com"]
WORDS = ("the of and to in is that for it as with was on be by this are or at from have an "
         "not which but all were can we when there their one has more will would been if so "
         "about what out up into them time only other some could these two may first then do "
         "any like my now over such our man me even most made after also did many before must "
         "through back years where much your way well down should because each just those "
         "people how too little state good very make world still own see men work long get "
         "here between both life being under never day same another know while last might "
         "great old year off come since against go came right used take three server mailbox "
         "folder message backup recovery release patch build test deploy invoice meeting "
         "agenda report review schedule budget quarter project draft attached please thanks "
         "regards question answer issue ticket change update migration replica sync").split()
SUBJ = ["Re: ", "Fwd: ", "", "", "", "Re: Re: "]
TOPICS = ["quarterly report", "meeting tomorrow", "invoice {n}", "build failure on main",
          "release {n} checklist", "holiday plans", "your order #{n}", "server migration",
          "patch review: fix {n}", "[rust-users] lifetime question", "budget draft v{n}",
          "Bienvenue à l'équipe", "Grüße aus Berlin", "backup window change", "ticket #{n}"]
ATTACH = [("application/pdf", "pdf"), ("image/jpeg", "jpg"), ("application/zip", "zip"),
          ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx")]


def mutf7(name):
    """Unicode mailbox name -> IMAP modified UTF-7 (RFC 3501 5.1.3)."""
    out, pend = [], []

    def flush():
        if pend:
            b = base64.b64encode("".join(pend).encode("utf-16-be")).decode().rstrip("=")
            out.append("&" + b.replace("/", ",") + "-")
            pend.clear()
    for ch in name:
        if 0x20 <= ord(ch) <= 0x7e:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pend.append(ch)
    flush()
    return "".join(out)


def person(rnd):
    f, l = rnd.choice(FIRST), rnd.choice(LAST)
    addr = f"{f.lower()}.{l.lower()}@{rnd.choice(DOMAINS)}".encode("ascii", "ignore").decode()
    addr = addr.replace("é", "e")
    if all(ord(c) < 128 for c in f + l):
        return f"{f} {l} <{addr}>"
    enc = base64.b64encode(f"{f} {l}".encode()).decode()
    return f"=?UTF-8?B?{enc}?= <{addr}>"


def header_value(s):
    if all(ord(c) < 128 for c in s):
        return s
    return "=?UTF-8?B?" + base64.b64encode(s.encode()).decode() + "?="


def paragraph_text(rnd, nbytes):
    """About nbytes of wrapped plain text (LF line ends)."""
    words = rnd.choices(WORDS, k=max(8, nbytes // 5))
    lines, cur, n = [], [], 0
    for w in words:
        cur.append(w)
        n += len(w) + 1
        if n > 68:
            lines.append(" ".join(cur))
            cur, n = [], 0
            if rnd.random() < 0.12:
                lines.append("")
    if cur:
        lines.append(" ".join(cur))
    text = "\n".join(lines)
    return text[:nbytes] if len(text) > nbytes else text


def rfc2822_date(ts, tzmin):
    t = time.gmtime(ts + tzmin * 60)
    sign = "+" if tzmin >= 0 else "-"
    return time.strftime("%a, %d %b %Y %H:%M:%S ", t) + f"{sign}{abs(tzmin) // 60:02d}{abs(tzmin) % 60:02d}"


def make_message(seed, i, n_total):
    """Message i of the corpus: (folder, flags, keywords, internaldate, bytes)."""
    rnd = random.Random(f"mailreplica-bench:{seed}:{i}")
    if i < len(FOLDERS):
        folder = FOLDERS[i][0]
    else:
        folder = rnd.choices([f for f, _ in FOLDERS], weights=[w for _, w in FOLDERS])[0]
    # INTERNALDATE grows with i (with jitter); the delta messages (i >= n_total) are "today".
    if i < n_total:
        idate = T0 + int(SPAN * i / max(1, n_total)) + rnd.randint(0, 3600)
    else:
        idate = T0 + SPAN + 3600 + (i - n_total) * 97
    tz = rnd.choice([0, 60, 120, -300, -420, 330, 540])
    sent = idate - rnd.randint(2, 900)
    big = rnd.random() < 0.03
    if big:
        target = rnd.randint(500_000, 3_000_000)
    else:
        target = int(min(50_000, max(2_000, rnd.lognormvariate(math.log(9_000), 0.75))))
    me = "Bench User <bench.user@example.org>"
    other = person(rnd)
    frm, to = (me, other) if folder == "Sent" else (other, me)
    subj = rnd.choice(SUBJ) + rnd.choice(TOPICS).format(n=rnd.randint(100, 99999))
    dom = rnd.choice(DOMAINS)
    msgid = f"<{rnd.getrandbits(64):016x}.{i}@{dom}>"
    hdr = []
    if folder != "Sent":
        relay = f"mx{rnd.randint(1, 9)}.{dom}"
        hdr += [f"Return-Path: <{other.split('<')[-1].rstrip('>')}>",
                f"Received: from {relay} ({relay} [192.0.2.{rnd.randint(1, 254)}])\n"
                f"\tby mail.example.org (Postfix) with ESMTPS id {rnd.getrandbits(40):010X}\n"
                f"\tfor <bench.user@example.org>; {rfc2822_date(idate, 0)}",
                f"Received: from [10.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}]"
                f" by {relay} with ESMTPSA; {rfc2822_date(sent + 1, tz)}"]
    hdr += [f"Date: {rfc2822_date(sent, tz)}", f"From: {frm}", f"To: {to}"]
    if rnd.random() < 0.2:
        hdr.append(f"Cc: {person(rnd)}, {person(rnd)}")
    hdr += [f"Subject: {header_value(subj)}", f"Message-ID: {msgid}"]
    if subj.startswith("Re:"):
        ref = f"<{rnd.getrandbits(64):016x}@{dom}>"
        hdr += [f"In-Reply-To: {ref}", f"References: {ref}"]
    if folder.startswith("Lists/"):
        lname = folder.split("/")[1]
        hdr += [f"List-Id: <{lname}.lists.example.org>",
                f"List-Unsubscribe: <mailto:{lname}-leave@lists.example.org>"]
    hdr += [rnd.choice(["User-Agent: Mozilla Thunderbird", "X-Mailer: Apple Mail (2.3731)",
                        "User-Agent: mutt/2.2.9", "X-Mailer: Microsoft Outlook 16.0"]),
            "MIME-Version: 1.0"]
    head_len = sum(len(h) + 1 for h in hdr)
    kind = rnd.random()
    body_budget = max(300, target - head_len - 200)
    if big:
        ctype, ext = rnd.choice(ATTACH)
        att_len = int(body_budget * 3 / 4 * 0.99)
        att = base64.encodebytes(rnd.randbytes(att_len)).decode()
        b = f"=_bench_{rnd.getrandbits(48):012x}"
        text = paragraph_text(rnd, 600)
        body = (f"This is a multi-part message in MIME format.\n\n--{b}\n"
                f"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 7bit\n\n"
                f"{text}\n\n--{b}\nContent-Type: {ctype}; name=\"file{i}.{ext}\"\n"
                f"Content-Disposition: attachment; filename=\"file{i}.{ext}\"\n"
                f"Content-Transfer-Encoding: base64\n\n{att}\n--{b}--\n")
        hdr.append(f"Content-Type: multipart/mixed; boundary=\"{b}\"")
    elif kind < 0.55:
        hdr += ["Content-Type: text/plain; charset=utf-8; format=flowed",
                "Content-Transfer-Encoding: 8bit"]
        body = paragraph_text(rnd, body_budget) + "\n"
    elif kind < 0.85:
        b = f"=_alt_{rnd.getrandbits(48):012x}"
        text = paragraph_text(rnd, body_budget * 2 // 5)
        html = "<html><body>\n" + "\n".join(
            f"<p>{p}</p>" for p in text.split("\n\n")) + "\n</body></html>"
        body = (f"--{b}\nContent-Type: text/plain; charset=utf-8\n"
                f"Content-Transfer-Encoding: 7bit\n\n{text}\n\n--{b}\n"
                f"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: 7bit\n\n"
                f"{html}\n\n--{b}--\n")
        hdr.append(f"Content-Type: multipart/alternative; boundary=\"{b}\"")
    else:
        ctype, ext = rnd.choice(ATTACH)
        b = f"=_mix_{rnd.getrandbits(48):012x}"
        text = paragraph_text(rnd, min(1500, body_budget // 3))
        att_len = max(100, int((body_budget - len(text)) * 3 / 4 * 0.98))
        att = base64.encodebytes(rnd.randbytes(att_len)).decode()
        body = (f"--{b}\nContent-Type: text/plain; charset=utf-8\n"
                f"Content-Transfer-Encoding: 7bit\n\n{text}\n\n--{b}\n"
                f"Content-Type: {ctype}; name=\"doc{i}.{ext}\"\n"
                f"Content-Disposition: attachment; filename=\"doc{i}.{ext}\"\n"
                f"Content-Transfer-Encoding: base64\n\n{att}\n--{b}--\n")
        hdr.append(f"Content-Type: multipart/mixed; boundary=\"{b}\"")
    data = ("\n".join(hdr) + "\n\n" + body).encode("utf-8")
    flags = []
    r = rnd.random()
    if folder in ("Sent",) or r < 0.8:
        flags.append("\\Seen")
    if rnd.random() < 0.06:
        flags.append("\\Flagged")
    if folder != "Sent" and rnd.random() < 0.12:
        flags.append("\\Answered")
    kws = [k for k, p in zip(KEYWORDS, (0.03, 0.02)) if rnd.random() < p]
    return folder, flags, kws, idate, data


MAILDIR_LETTER = {"\\Seen": "S", "\\Flagged": "F", "\\Answered": "R"}


def cmd_gen(a):
    d = a.dir
    if os.path.exists(os.path.join(d, "complete")):
        print(f"corpus cached in {d}", file=sys.stderr)
        return
    t0 = time.time()
    tmp = d + ".tmp"
    os.system(f"rm -rf '{tmp}'")
    md = os.path.join(tmp, "maildir")
    paths = {}
    for f, _ in FOLDERS:
        p = os.path.join(md, *mutf7(f).split("/"))
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(p, sub), exist_ok=True)
        with open(os.path.join(p, "dovecot-keywords"), "w") as fh:
            fh.write("".join(f"{n} {k}\n" for n, k in enumerate(KEYWORDS)))
        paths[f] = p
    per = {f: {"messages": 0, "bytes": 0} for f, _ in FOLDERS}
    total = big = 0
    for i in range(a.messages):
        folder, flags, kws, idate, data = make_message(a.seed, i, a.messages)
        letters = "".join(sorted(MAILDIR_LETTER[f] for f in flags))
        letters += "".join(chr(ord("a") + KEYWORDS.index(k)) for k in kws)
        vsize = len(data) + data.count(b"\n")
        name = f"{idate}.M{i}P0.bench,S={len(data)},W={vsize}:2,{letters}"
        fn = os.path.join(paths[folder], "cur", name)
        with open(fn, "wb") as fh:
            fh.write(data)
        os.utime(fn, (idate, idate))
        per[folder]["messages"] += 1
        per[folder]["bytes"] += vsize
        total += vsize
        big += len(data) > 400_000
        if i and i % 5000 == 0:
            print(f"  generated {i} messages ({total / 1e6:.0f} MB, {time.time() - t0:.0f} s)",
                  file=sys.stderr)
    # The new messages of scenario 3: 1 % more.
    dd = os.path.join(tmp, "delta")
    os.makedirs(dd)
    index = []
    n_new = max(1, a.messages // 100)
    new_bytes = 0
    for i in range(a.messages, a.messages + n_new):
        folder, flags, kws, idate, data = make_message(a.seed, i, a.messages)
        data = data.replace(b"\n", b"\r\n")   # sent as is by APPEND
        fn = f"{i:07d}.eml"
        with open(os.path.join(dd, fn), "wb") as fh:
            fh.write(data)
        index.append({"file": fn, "folder": folder, "flags": flags + kws, "internaldate": idate})
        new_bytes += len(data)
    with open(os.path.join(dd, "index.json"), "w") as fh:
        json.dump(index, fh, indent=0)
    meta = {"generator_version": GENERATOR_VERSION, "seed": a.seed, "messages": a.messages,
            "bytes": total, "large_messages": big, "folders": per,
            "delta_messages": n_new, "delta_bytes": new_bytes,
            "rename_from": RENAME_FROM, "rename_to": RENAME_TO,
            "generation_seconds": round(time.time() - t0, 1)}
    with open(os.path.join(tmp, "corpus.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    with open(os.path.join(tmp, "complete"), "w") as fh:
        fh.write("ok\n")
    os.system(f"rm -rf '{d}'")
    os.rename(tmp, d)
    print(f"generated {a.messages} messages, {total / 1e6:.1f} MB ({big} large) in "
          f"{time.time() - t0:.1f} s into {d}", file=sys.stderr)


# ------------------------------------------------------------------ IMAP changes

def imap_login(port, user):
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login(user, "test")
    return m


def q(name):
    return '"' + mutf7(name).replace("\\", "\\\\").replace('"', '\\"') + '"'


def cmd_changes(a):
    with open(os.path.join(a.corpus, "corpus.json")) as fh:
        meta = json.load(fh)
    m = imap_login(a.port, a.user)
    allmsgs = []
    for f, _ in FOLDERS:
        typ, _ = m.select(q(f))
        if typ != "OK":
            continue
        typ, data = m.uid("SEARCH", "ALL")
        uids = sorted(int(x) for x in data[0].split())
        allmsgs += [(f, u) for u in uids]
    rnd = random.Random(f"mailreplica-bench-changes:{a.seed}:{meta['messages']}")
    k = max(1, len(allmsgs) // 100)
    picked = rnd.sample(range(len(allmsgs)), 2 * k)
    flagged = sorted(allmsgs[j] for j in picked[:k])
    expunged = sorted(allmsgs[j] for j in picked[k:])
    t0 = time.time()
    for f, _ in FOLDERS:
        fl = [u for ff, u in flagged if ff == f]
        ex = [u for ff, u in expunged if ff == f]
        if not fl and not ex:
            continue
        m.select(q(f))
        for u in fl:
            typ, data = m.uid("FETCH", str(u), "(FLAGS)")
            cur = data[0].decode() if data and data[0] else ""
            for flag in ("\\Seen", "\\Flagged"):
                op = "-FLAGS.SILENT" if flag in cur else "+FLAGS.SILENT"
                m.uid("STORE", str(u), op, f"({flag})")
        if ex:
            uidset = ",".join(map(str, ex))
            m.uid("STORE", uidset, "+FLAGS.SILENT", "(\\Deleted)")
            typ, _ = m.uid("EXPUNGE", uidset)
            if typ != "OK":
                raise SystemExit(f"UID EXPUNGE failed in {f}")
        m.close()
    with open(os.path.join(a.corpus, "delta", "index.json")) as fh:
        index = json.load(fh)
    nb = 0
    for e in index:
        with open(os.path.join(a.corpus, "delta", e["file"]), "rb") as fh:
            data = fh.read()
        if a.salt:
            # Repeated runs (profiling) need new messages that are new: one more header.
            data = f"X-Bench-Salt: {a.salt}\r\n".encode() + data
        nb += len(data)
        typ, _ = m.append(q(e["folder"]), "(" + " ".join(e["flags"]) + ")",
                          imaplib.Time2Internaldate(e["internaldate"]), data)
        if typ != "OK":
            raise SystemExit(f"APPEND to {e['folder']} failed")
    m.logout()
    print(json.dumps({"flag_changes": len(flagged), "expunged": len(expunged),
                      "appended": len(index), "appended_bytes": nb,
                      "seconds": round(time.time() - t0, 2)}))


def cmd_rename(a):
    m = imap_login(a.port, a.user)
    typ, data = m.status(q(a.src), "(MESSAGES SIZE)")
    info = data[0].decode() if typ == "OK" else ""
    typ, data = m.rename(q(a.src), q(a.dst))
    if typ != "OK":
        raise SystemExit(f"RENAME failed: {data}")
    m.logout()
    import re
    msgs = re.search(r"MESSAGES (\d+)", info)
    size = re.search(r"SIZE (\d+)", info)
    print(json.dumps({"messages": int(msgs.group(1)) if msgs else 0,
                      "bytes": int(size.group(1)) if size else 0}))


# ------------------------------------------------------------------ report

def cmd_verify_summary(a):
    with open(a.file) as fh:
        r = json.load(fh)
    kinds = {}
    for x in r.get("differences", []):
        w = x["what"]
        if w.startswith("folder"):
            k = f"{w} ({x['folder']})"
        elif "flags differ" in w:
            k = "flags differ"
        elif w.endswith("is missing on the target"):
            k = "missing on the target"
        elif w.endswith("is only on the target"):
            k = "only on the target"
        else:
            k = w[:60]
        kinds[k] = kinds.get(k, 0) + 1
    print("; ".join(f"{n} {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])))


SCEN_LABEL = {"initial": "initial copy", "noop": "no-op re-sync",
              "changes": "1% flags/new/expunged", "rename": "folder renamed",
              "journal-on": "initial, journal on", "journal-off": "initial, journal off"}


def fnum(x, nd=1):
    if x is None:
        return "-"
    if x >= 1000:
        return f"{x:,.0f}".replace(",", " ")
    return f"{x:.{nd}f}"


def cmd_report(a):
    with open(a.meta) as fh:
        meta = json.load(fh)
    with open(a.corpus) as fh:
        corpus = json.load(fh)
    rows = []
    with open(a.results) as fh:
        for line in fh:
            if line.strip():
                rows.append(json.loads(line))
    for r in rows:
        sec = float(r["seconds"])
        msgs, nbytes = int(r["messages"]), int(r["bytes"])
        r["seconds"] = sec
        r["messages"], r["bytes"] = msgs, nbytes
        r["exit"] = int(r["exit"])
        r["rss_mb"] = round(int(r["rss_kb"]) / 1024, 1) if r.get("rss_kb") else None
        r.pop("rss_kb", None)
        ok = r["exit"] == 0
        if r["tool"] == "mbsync" and r["exit"] == 1:
            ok = False
        if r["tool"] == "interimap" and r["scenario"] == "rename" and not ok:
            r["status"] = "n/a"
            r["note"] = ("n/a: interimap aborts when a known mailbox disappears from one server "
                         "(interimap(1), KNOWN BUGS: renames must go through interimap --rename)")
        else:
            r["status"] = "ok" if ok else f"FAILED (exit {r['exit']})"
        if r["status"] == "ok" and r.get("verify") not in ("ok", "skipped", None):
            r["status"] = "ok, verify: " + r["verify"]
        r["messages_per_s"] = round(msgs / sec, 1) if sec > 0 and msgs else None
        r["mb_per_s"] = round(nbytes / 1e6 / sec, 2) if sec > 0 and nbytes else None
        # mailreplica's own summary of the run
        if r["tool"] == "mailreplica" and r.get("log"):
            out = os.path.join(os.path.dirname(a.results), "..", "..", "..",
                               r["log"][:-len(".err")] + ".out")
            try:
                with open(out) as fh:
                    sm = json.loads(fh.read().strip().splitlines()[-1])
                r["summary"] = {k: sm.get(k) for k in (
                    "copied", "copied_on_target", "adopted", "flags_updated", "removed",
                    "removals_held", "folders_created", "bytes_uploaded", "bytes_placed",
                    "seconds", "notices", "folder_errors", "refused", "quarantined")}
            except (OSError, ValueError, IndexError):
                pass
            if r.get("summary") and r["summary"].get("notices"):
                r["note"] = "; ".join(x for x in [r.get("note")] + r["summary"]["notices"] if x)
        if r.get("verify_seconds"):
            r["verify_seconds"] = float(r["verify_seconds"])
    # Ratios: to the best *peer* (a tool other than mailreplica) that succeeded in the
    # same scenario; to the best tool if no peer did.
    metrics = [("seconds", min), ("messages_per_s", max), ("mb_per_s", max), ("rss_mb", min)]
    for scen in {r["scenario"] for r in rows}:
        if scen.startswith("journal"):
            continue
        group = [r for r in rows if r["scenario"] == scen]
        good = [r for r in group if r["status"].startswith("ok")]
        peers = [r for r in good if r["tool"] != "mailreplica"] or good
        for key, best in metrics:
            vals = [r[key] for r in peers if r.get(key)]
            ref = best(vals) if vals else None
            for r in group:
                r[key + "_ratio"] = (round(r[key] / ref, 2)
                                     if ref and r.get(key) and r["status"] != "n/a" else None)
    order = {s: i for i, s in enumerate(SCEN_LABEL)}
    rows.sort(key=lambda r: (order.get(r["scenario"], 99),
                             meta["tools"].split(",").index(r["tool"])
                             if r["tool"] in meta["tools"].split(",") else 99))

    def ratio(x):
        return "" if x is None else f"{x:.2f}x"
    for r in rows:
        for key, _ in metrics:
            r.setdefault(key + "_ratio", None)
    hdr = (f"{'scenario':<22} {'tool':<12} {'seconds':>8} {'ratio':>6} {'msgs/s':>8} {'ratio':>6}"
           f" {'MB/s':>7} {'ratio':>6} {'RSS MB':>7} {'ratio':>6}  status")
    out = [f"mailreplica bench: {meta['messages']} messages ({corpus['bytes'] / 1e6:.1f} MB, "
           f"{corpus['large_messages']} large), seed {meta['seed']}, {len(corpus['folders'])} "
           f"folders; {meta['cores']} cores; Dovecot {meta['dovecot_version']} -> Dovecot, "
           f"plain IMAP on 127.0.0.1",
           f"mailreplica {meta['mailreplica_commit']}, interimap {meta['interimap_version'] or '-'}, "
           f"mbsync (isync) {meta['mbsync_version'] or '-'}; ratio = value / best peer "
           f"(best of the tools other than mailreplica)",
           "", hdr, "-" * len(hdr)]
    last = None
    for r in rows:
        if last is not None and r["scenario"] != last:
            out.append("")
        last = r["scenario"]
        na = r["status"] == "n/a"
        out.append(
            f"{SCEN_LABEL.get(r['scenario'], r['scenario']):<22} {r['tool']:<12} "
            f"{'n/a' if na else fnum(r['seconds'], 2):>8} {ratio(r['seconds_ratio']):>6} "
            f"{'n/a' if na else fnum(r['messages_per_s']):>8} {ratio(r['messages_per_s_ratio']):>6} "
            f"{'n/a' if na else fnum(r['mb_per_s'], 2):>7} {ratio(r['mb_per_s_ratio']):>6} "
            f"{fnum(r['rss_mb']):>7} {ratio(r['rss_mb_ratio']):>6}  {r['status']}")
    notes = [r for r in rows if r.get("note") or r.get("verify_detail")]
    if notes:
        out.append("")
        for r in notes:
            txt = "; ".join(x for x in (r.get("note"), r.get("verify_detail")) if x)
            out.append(f"  {r['tool']} / {r['scenario']}: {txt}")
    if any(r["tool"] == "mbsync" and r.get("verify") == "differences" for r in rows):
        out.append("  mbsync: adds an X-TUID header to every message it uploads and does not copy "
                   "keywords (isync 1.4), so its copies are not byte-identical and `verify` (SHA-256 "
                   "of the bytes, flags, INTERNALDATE) pairs none of them")
    vs = [r for r in rows if r.get("verify_seconds")]
    if vs:
        out.append("  mailreplica verify after each run: " + ", ".join(
            f"{r['tool']}/{r['scenario']} {r['verify_seconds']:.1f} s" for r in vs))
    jon = [r for r in rows if r["scenario"] == "journal-on" and r["exit"] == 0]
    joff = [r for r in rows if r["scenario"] == "journal-off" and r["exit"] == 0]
    if jon and joff:
        out.append(f"  journal cost: throughput with the journal = "
                   f"{100 * joff[0]['seconds'] / jon[0]['seconds']:.1f} % of the throughput without")
    out.append("")
    out.append(f"  corpus step {meta['corpus_generation_seconds']} s (generation, or a cache hit); "
               f"doveadm import per primary account: " +
               ", ".join(f"{t} {s:.1f} s" for t, s in meta["load_seconds"].items()))
    print("\n".join(out))
    result = {"meta": meta, "corpus": corpus, "results": rows, "table": "\n".join(out)}
    with open(a.out, "w") as fh:
        json.dump(result, fh, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    sp = p.add_subparsers(dest="cmd", required=True)
    g = sp.add_parser("gen")
    g.add_argument("dir")
    g.add_argument("--seed", required=True)
    g.add_argument("--messages", type=int, required=True)
    c = sp.add_parser("changes")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--user", required=True)
    c.add_argument("--corpus", required=True)
    c.add_argument("--seed", required=True)
    c.add_argument("--salt", default="",
                   help="prefix each new message with a header (repeatable runs)")
    r = sp.add_parser("rename")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--user", required=True)
    r.add_argument("--from", dest="src", default=RENAME_FROM)
    r.add_argument("--to", dest="dst", default=RENAME_TO)
    rp = sp.add_parser("report")
    rp.add_argument("--results", required=True)
    rp.add_argument("--meta", required=True)
    rp.add_argument("--corpus", required=True)
    rp.add_argument("--out", required=True)
    vs = sp.add_parser("verify-summary")
    vs.add_argument("file")
    a = p.parse_args()
    {"gen": cmd_gen, "changes": cmd_changes, "rename": cmd_rename, "report": cmd_report,
     "verify-summary": cmd_verify_summary}[a.cmd](a)

//! A private Dovecot instance for one test: its own directory, config and free loopback ports,
//! so that a test may stop, kill and restart it without touching the shared test servers. The
//! config is rendered from `scripts/servers/dovecot.conf.in` the way `scripts/test-servers`
//! renders it (same placeholders, the shared TLS files); the mail directory survives a kill,
//! a stop and a restart. Needs root (Dovecot drops to `vmail` itself), like the shared servers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::servers::{manifest_dir, TestServer, PASSWORD};

/// How long a (re)start may take before the test fails (cold start here: 0.2-0.5 s).
const START_DEADLINE: Duration = Duration::from_secs(20);

/// One private Dovecot: stopped and its directory removed when dropped.
pub struct PrivateDovecot {
    dir: tempfile::TempDir,
    /// `instance_name` is `mailreplica-<name>`: its processes are titled `mailreplica-<name>/...`.
    name: String,
    pub imap_port: u16,
    pub imaps_port: u16,
}

impl PrivateDovecot {
    /// Renders the config and starts the instance; returns once a login works.
    pub fn start() -> PrivateDovecot {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "pv{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        // Dovecot's processes run as vmail and must reach the mail store: the directory and
        // its parents need o+x (the default temp dir, /tmp, is 1777).
        let dir = tempfile::Builder::new()
            .prefix("mr-private-dovecot-")
            .tempdir()
            .expect("creating the private Dovecot's directory");
        set_mode(dir.path(), 0o755);
        let imap_port = free_port();
        let imaps_port = std::iter::repeat_with(free_port)
            .find(|&p| p != imap_port)
            .unwrap();
        let dovecot = PrivateDovecot {
            dir,
            name,
            imap_port,
            imaps_port,
        };
        dovecot.write_config();
        dovecot.launch();
        dovecot
    }

    /// The instance as a [`TestServer`] (for `TestImap` and URLs).
    pub fn server(&self) -> TestServer {
        TestServer {
            name: "dovecot-private",
            host: "127.0.0.1".into(),
            port: self.imap_port,
            tls_port: Some(self.imaps_port),
        }
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("dovecot.conf")
    }

    /// Where `user`'s mail lives (`mail_location = sdbox:~/sdbox`, home `mail/<user>`).
    pub fn mail_dir(&self, user: &str) -> PathBuf {
        self.dir.path().join("mail").join(user)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("dovecot-{}.log", self.name))
    }

    /// The last lines of the instance's logs, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for path in [self.log_path(), self.dir.path().join("stdout.log")] {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(25);
            out.push_str(&format!("==> {} <==\n", path.display()));
            for line in &lines[from..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    fn write_config(&self) {
        let servers = servers_dir();
        let template = manifest_dir().join("scripts/servers/dovecot.conf.in");
        let text = std::fs::read_to_string(&template)
            .unwrap_or_else(|e| panic!("reading {}: {e}", template.display()));
        let (uid, gid) = vmail_ids();
        let inst = self.dir.path().display().to_string();
        let rendered = [
            ("NAME", self.name.clone()),
            ("INST", inst.clone()),
            ("LOGDIR", inst),
            ("TLSDIR", servers.join("tls").display().to_string()),
            ("IMAP_PORT", self.imap_port.to_string()),
            ("IMAPS_PORT", self.imaps_port.to_string()),
            ("VMAIL_UID", uid.to_string()),
            ("VMAIL_GID", gid.to_string()),
            ("EXTRA", String::new()),
            ("SEPARATOR", "/".into()),
            // Any user name, password "test", as every shared instance but "auth".
            (
                "PASSDB",
                "passdb {\n  driver = static\n  args = password=test\n}".into(),
            ),
        ]
        .iter()
        .fold(text, |t, (key, value)| {
            t.replace(&format!("@{key}@"), value)
        });
        assert!(
            !rendered.contains("@INST@")
                && !rendered.contains("@NAME@")
                && !rendered.contains("@PASSDB@"),
            "{} has placeholders this helper does not know; update tests/support/private_dovecot.rs",
            template.display()
        );
        std::fs::write(self.conf(), rendered).unwrap();
        let mail = self.dir.path().join("mail");
        std::fs::create_dir_all(&mail).unwrap();
        std::fs::create_dir_all(self.dir.path().join("state")).unwrap();
        std::os::unix::fs::chown(&mail, Some(uid), Some(gid)).unwrap();
    }

    /// Starts the daemon (it detaches itself) and waits until a login works.
    fn launch(&self) {
        // A fresh base_dir, as scripts/test-servers does: stale sockets and the pid file of a
        // killed master stay behind otherwise.
        let run = self.dir.path().join("run");
        let _ = std::fs::remove_dir_all(&run);
        std::fs::create_dir_all(&run).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("stdout.log"))
            .unwrap();
        let mut cmd = Command::new("dovecot");
        cmd.arg("-c")
            .arg(self.conf())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // SAFETY: only fcntl(2) between fork and exec (async-signal-safe, no allocation). The
        // daemon must not keep a descriptor the test process inherited (a pipe someone waits on).
        unsafe {
            cmd.pre_exec(|| {
                for fd in 3..4096 {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
                Ok(())
            });
        }
        let status = cmd.status().expect(
            "running dovecot (is dovecot-core installed? scripts/test-servers start installs it)",
        );
        assert!(
            status.success(),
            "dovecot -c {} did not start ({status}):\n{}",
            self.conf().display(),
            self.log_tail()
        );
        let start = Instant::now();
        while !login_works(self.addr()) {
            assert!(
                start.elapsed() < START_DEADLINE,
                "the private Dovecot on port {} did not accept a login within {} s:\n{}",
                self.imap_port,
                START_DEADLINE.as_secs(),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts it again after [`PrivateDovecot::kill`] or [`PrivateDovecot::stop`]: same config,
    /// ports and mail.
    pub fn restart(&self) {
        assert!(
            self.pids().is_empty(),
            "restart of a private Dovecot that still runs"
        );
        self.launch();
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.imap_port))
    }

    /// The master's pid, if it runs (read from its pid file, checked against its command line).
    fn master(&self) -> Option<i32> {
        let raw = std::fs::read_to_string(self.dir.path().join("run/master.pid")).ok()?;
        let pid: i32 = raw.trim().parse().ok()?;
        let conf = self.conf().display().to_string();
        (alive(pid) && cmdline(pid).contains(&conf)).then_some(pid)
    }

    /// The master and its children (every Dovecot process is a child of the master).
    pub fn pids(&self) -> Vec<i32> {
        let Some(master) = self.master() else {
            return self.orphans();
        };
        let mut pids = vec![master];
        pids.extend(children(master));
        pids
    }

    /// Processes of this instance whose master is gone (they are titled `mailreplica-<name>/`).
    fn orphans(&self) -> Vec<i32> {
        let title = format!("mailreplica-{}/", self.name);
        all_pids()
            .into_iter()
            .filter(|&pid| alive(pid) && cmdline(pid).contains(&title))
            .collect()
    }

    pub fn is_running(&self) -> bool {
        self.master().is_some()
    }

    /// SIGKILL to the master and every child at once: a crash, no goodbye to any client.
    pub fn kill(&self) {
        self.signal_and_wait(libc::SIGKILL, Duration::from_secs(10));
    }

    /// A clean stop, as an admin would before restoring a backup: SIGTERM to the master and to
    /// every child at once. Each process ends cleanly (clients get `BYE Server shutting down`);
    /// the master alone would give connected clients 10 s before ending them.
    pub fn stop(&self) {
        let pids = self.pids();
        for &pid in &pids {
            // SAFETY: kill(2) on processes of this instance only (see `pids`).
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        if !wait_gone(&pids, Duration::from_secs(10)) {
            self.kill();
        }
    }

    fn signal_and_wait(&self, signal: i32, wait: Duration) {
        let pids = self.pids();
        for &pid in &pids {
            // SAFETY: kill(2) on processes of this instance only (see `pids`).
            unsafe { libc::kill(pid, signal) };
        }
        assert!(
            wait_gone(&pids, wait),
            "private Dovecot processes {pids:?} still alive after signal {signal}"
        );
        let left = self.orphans();
        for &pid in &left {
            // SAFETY: as above; stragglers titled with this instance's name.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        assert!(wait_gone(&left, wait), "stragglers {left:?} survived");
    }
}

impl Drop for PrivateDovecot {
    fn drop(&mut self) {
        let pids = self.pids();
        for &pid in &pids {
            // SAFETY: processes of this instance only (see `pids`).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        wait_gone(&pids, Duration::from_secs(5));
    }
}

/// `MAILREPLICA_SERVERS_DIR` / `MR_SERVERS_DIR`, default `/var/tmp/mailreplica-servers`.
fn servers_dir() -> PathBuf {
    std::env::var_os("MAILREPLICA_SERVERS_DIR")
        .or_else(|| std::env::var_os("MR_SERVERS_DIR"))
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/mailreplica-servers"))
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The uid and gid of the system user `vmail` (created by scripts/test-servers).
fn vmail_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() > 3 && f[0] == "vmail").then(|| (f[2].parse().ok(), f[3].parse().ok()))
        })
        .and_then(|(u, g)| Some((u?, g?)))
        .expect("no user vmail: run scripts/test-servers start once (it creates it)")
}

/// A loopback port nothing listens on, below the ephemeral range (32768+): a client's own
/// outgoing connections never take it, even while the instance is down.
fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let seed = nanos ^ std::process::id().wrapping_mul(2_654_435_761);
    for _ in 0..200 {
        let n = seed.wrapping_add(NEXT.fetch_add(7_919, Ordering::Relaxed));
        let port = 20_000 + (n % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between 20000 and 32000");
}

/// LOGIN as a probe user succeeds (plain std I/O: called before and after restarts).
fn login_works(addr: SocketAddr) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        let mut sent = false;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(false);
            }
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            if !sent && text.contains("\r\n") {
                if !text.starts_with("* OK") {
                    return Ok(false);
                }
                s.write_all(format!("a LOGIN probe {PASSWORD}\r\nb LOGOUT\r\n").as_bytes())?;
                sent = true;
            }
            if text.contains("\r\na OK") {
                return Ok(true);
            }
            if text.contains("\r\na NO") || text.contains("\r\na BAD") {
                return Ok(false);
            }
        }
    };
    attempt().unwrap_or(false)
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The `(state, ppid)` of a process from /proc/PID/stat.
fn stat(pid: i32) -> Option<(char, i32)> {
    let raw = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields follow the last ')'.
    let rest = &raw[raw.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Exists and is not a zombie (an exited daemon can linger as a zombie of pid 1).
fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z')
}

fn children(parent: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&pid| stat(pid).is_some_and(|(state, ppid)| ppid == parent && state != 'Z'))
        .collect()
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .unwrap_or_default()
}

/// Waits until none of `pids` is alive; false after `wait`.
fn wait_gone(pids: &[i32], wait: Duration) -> bool {
    let start = Instant::now();
    while pids.iter().any(|&p| alive(p)) {
        if start.elapsed() > wait {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

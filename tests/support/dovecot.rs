//! A real Dovecot for the tests: a throwaway instance in a short temporary
//! folder, on free loopback ports (IMAP, IMAPS), with a self-signed
//! certificate, run as `nobody` through `setpriv` when the tests run as root
//! (Dovecot refuses to run its login processes as root). Stop and start it
//! again at will; dropped, it is stopped. If Dovecot cannot be started the
//! test fails with the reason: it never passes silently.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "test@example.test";
pub const PASSWORD: &str = "secret";
/// A second user whose only credential is an OAuth2 bearer token (XOAUTH2).
pub const OAUTH_USER: &str = "oauth@example.test";
pub const OAUTH_TOKEN: &str = "ya29.test-token-0123456789";

pub struct Dovecot {
    pub dir: tempfile::TempDir,
    pub imap_port: u16,
    pub imaps_port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
}

const DOVECOT: &str = "/usr/sbin/dovecot";

impl Dovecot {
    pub fn start() -> Dovecot {
        assert!(
            Path::new(DOVECOT).exists(),
            "Dovecot is not installed ({DOVECOT} missing): the IMAP tests need a real server. \
             `bash .ci/test.sh` installs it (apt-get install dovecot-imapd dovecot-lmtpd)"
        );
        // A short path: Dovecot's Unix sockets live under it.
        let dir = tempfile::Builder::new().prefix("dv").tempdir_in("/tmp").unwrap();
        let d = dir.path();
        let (user, group) = if is_root() { ("nobody".to_string(), "nogroup".to_string()) } else {
            let u = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap().trim().to_string();
            let g = String::from_utf8(Command::new("id").arg("-gn").output().unwrap().stdout).unwrap().trim().to_string();
            (u, g)
        };
        run(
            Command::new("openssl").args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
                .args(["-addext", "basicConstraints=critical,CA:FALSE", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-addext", "extendedKeyUsage=serverAuth"])
                .arg("-keyout").arg(d.join("key.pem")).arg("-out").arg(d.join("cert.pem")),
            "openssl (self-signed certificate)",
        );
        std::fs::write(d.join("passwd"), format!("{USER}:{{PLAIN}}{PASSWORD}::::::\n{OAUTH_USER}:{{PLAIN}}{OAUTH_TOKEN}::::::\n")).unwrap();
        let (imap_port, imaps_port) = (free_port(), free_port());
        let conf = CONF
            .replace("__DIR__", &d.display().to_string())
            .replace("__USER__", &user)
            .replace("__GROUP__", &group)
            .replace("__IMAP_PORT__", &imap_port.to_string())
            .replace("__IMAPS_PORT__", &imaps_port.to_string());
        std::fs::write(d.join("dovecot.conf"), conf).unwrap();
        if is_root() {
            run(Command::new("chown").arg("-R").arg(format!("{user}:{group}")).arg(d), "chown");
        }
        let mut dv = Dovecot { dir, imap_port, imaps_port, child: None };
        dv.start_again();
        dv
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("dovecot.conf")
    }

    /// Starts the (stopped) instance with the same configuration and ports.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "dovecot already running");
        let mut cmd = if is_root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", DOVECOT]);
            c
        } else {
            Command::new(DOVECOT)
        };
        cmd.arg("-F").arg("-c").arg(self.conf()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        // Its own process group, so that stop() reaches every child process.
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start dovecot: {e}"));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if TcpStream::connect(("127.0.0.1", self.imap_port)).is_ok() && TcpStream::connect(("127.0.0.1", self.imaps_port)).is_ok() {
                break;
            }
            if let Some(st) = child.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                child.stderr.take().map(|mut e| e.read_to_string(&mut err));
                panic!("dovecot exited at start ({st}): {err}\nlog: {}", self.log());
            }
            assert!(Instant::now() < deadline, "dovecot did not open its ports within 15 s; log: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// Stops the instance: SIGTERM to its process group (the master ends its
    /// children and every client connection), SIGKILL to whatever is left
    /// after 10 s; returns once the ports are closed.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
            let _ = child.wait();
            let deadline = Instant::now() + Duration::from_secs(10);
            while TcpStream::connect(("127.0.0.1", self.imap_port)).is_ok() {
                let ps = Command::new("ps").args(["-eo", "pid,pgid,args"]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
                assert!(Instant::now() < deadline, "dovecot still listens on {} 10 s after it was stopped:\n{ps}", self.imap_port);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Drops a message straight into the test user's INBOX maildir, as a
    /// local delivery agent would while the IMAP server is down.
    pub fn deliver_to_maildir(&self, name: &str, raw: &[u8]) {
        let md = self.dir.path().join("mail").join(USER).join("Maildir");
        let (tmp, new) = (md.join("tmp"), md.join("new"));
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::create_dir_all(&new).unwrap();
        let file = format!("{}.{name}.test", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
        std::fs::write(tmp.join(&file), raw).unwrap();
        std::fs::rename(tmp.join(&file), new.join(&file)).unwrap();
        if is_root() {
            run(Command::new("chown").arg("-R").arg("nobody:nogroup").arg(self.dir.path().join("mail")), "chown maildir");
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

const CONF: &str = r#"instance_name = dd-test-__IMAP_PORT__
base_dir = __DIR__/run
state_dir = __DIR__/state
log_path = __DIR__/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <__DIR__/cert.pem
ssl_key = <__DIR__/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2
default_internal_user = __USER__
default_internal_group = __GROUP__
default_login_user = __USER__
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u __DIR__/passwd
}
userdb {
  driver = static
  args = uid=__USER__ gid=__GROUP__ home=__DIR__/mail/%u
}
mail_location = maildir:~/Maildir
namespace inbox {
  inbox = yes
  separator = /
  mailbox Sent {
    special_use = \Sent
    auto = subscribe
  }
}
protocol imap {
  mail_max_userip_connections = 100
}
service imap-login {
  chroot =
  inet_listener imap {
    address = 127.0.0.1
    port = __IMAP_PORT__
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = __IMAPS_PORT__
    ssl = yes
  }
}
service anvil {
  chroot =
}
postmaster_address = postmaster@example.test
"#;

//! imap: the IMAP edge. Connects with async-imap over plain TCP, STARTTLS or
//! implicit TLS (tokio-rustls, ring provider), logs in with a password or
//! `AUTHENTICATE XOAUTH2`, and offers the watcher a [`MailboxSession`]: select,
//! list new UIDs, fetch with `BODY.PEEK[]` (never `RFC822`, which sets
//! `\Seen`), flag or move after ingest, wait with IDLE or by polling. The
//! [`SentFolder`] side appends what we sent to the `\Sent` folder and searches
//! it by Message-ID after a crash.

use crate::mail::smtp::TlsMode;
use async_imap::extensions::idle::IdleResponse;
use async_imap::types::NameAttribute;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// Why an IMAP operation failed. Every variant is worth a reconnect except
/// `Config` and `Auth`, which need a person (the watcher still retries them
/// with backoff, so a fixed password is picked up without a restart).
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("cannot connect to {addr}")]
    Connect { addr: String, source: io::Error },
    #[error("tls with {host} failed")]
    Tls { host: String, source: io::Error },
    #[error("invalid mailbox configuration: {0}")]
    Config(String),
    #[error("login refused for {user}")]
    Auth { user: String, source: async_imap::error::Error },
    #[error("cannot read the oauth2 token: {0}")]
    Token(String),
    #[error("imap {command} failed")]
    Protocol { command: &'static str, source: async_imap::error::Error },
    #[error("imap server said goodbye or closed the connection")]
    Closed,
    #[error("imap {command} timed out after {secs} s")]
    Timeout { command: &'static str, secs: u64 },
    #[error("no sent folder: the server lists no \\Sent mailbox and none is configured")]
    NoSentFolder,
}

type Result<T, E = ImapError> = std::result::Result<T, E>;

/// What to do with a message on the server once it is safely stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterIngest {
    /// Leave it as it is (unread).
    #[default]
    Leave,
    /// Add the configured keyword (`keyword`, default `$DisputeDesk`).
    Keyword,
    /// Move it to the folder `move_to`.
    Move,
}

/// One `[[mailbox]]` entry of the configuration.
#[derive(Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailboxConfig {
    /// Stable name: the checkpoint and health rows are keyed by it.
    pub name: String,
    pub host: String,
    /// Default 993 for `tls`, 143 otherwise.
    pub port: Option<u16>,
    pub tls: TlsMode,
    pub username: String,
    pub password: Option<String>,
    /// XOAUTH2: a file holding the current access token (re-read at each connection).
    pub oauth2_token_file: Option<PathBuf>,
    /// XOAUTH2: a command (`sh -c`) whose stdout is the current access token.
    pub oauth2_token_command: Option<String>,
    /// Folder to watch.
    pub folder: String,
    /// Use IDLE when the server announces it (false: always poll).
    pub idle: bool,
    /// Seconds between polls when not idling.
    pub poll_secs: u64,
    /// Seconds before an IDLE is re-issued (servers may drop an IDLE after 30 min).
    pub idle_reissue_secs: u64,
    pub after_ingest: AfterIngest,
    pub keyword: String,
    pub move_to: Option<String>,
    /// Where the Sent copy goes; default: the folder the server marks `\Sent`.
    pub sent_folder: Option<String>,
    /// Extra trusted certificate(s), PEM (a self-hosted server's own certificate).
    pub ca_file: Option<PathBuf>,
    /// Upper bound of the reconnect backoff.
    pub reconnect_max_secs: u64,
    /// Deadline of one command (connect, login, fetch of a batch, append...).
    pub timeout_secs: u64,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        MailboxConfig {
            name: "inbox".into(),
            host: "127.0.0.1".into(),
            port: None,
            tls: TlsMode::Tls,
            username: String::new(),
            password: None,
            oauth2_token_file: None,
            oauth2_token_command: None,
            folder: "INBOX".into(),
            idle: true,
            poll_secs: 60,
            idle_reissue_secs: 25 * 60,
            after_ingest: AfterIngest::Leave,
            keyword: "$DisputeDesk".into(),
            move_to: None,
            sent_folder: None,
            ca_file: None,
            reconnect_max_secs: 300,
            timeout_secs: 60,
        }
    }
}

impl fmt::Debug for MailboxConfig {
    /// By hand so that the password never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailboxConfig")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port())
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("oauth2_token_file", &self.oauth2_token_file)
            .field("oauth2_token_command", &self.oauth2_token_command.as_ref().map(|_| "***"))
            .field("folder", &self.folder)
            .field("idle", &self.idle)
            .field("after_ingest", &self.after_ingest)
            .finish_non_exhaustive()
    }
}

impl MailboxConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(if self.tls == TlsMode::Tls { 993 } else { 143 })
    }

    /// Checks what can be checked without a server.
    pub fn validate(&self) -> Result<()> {
        let bad = |r: &str| Err(ImapError::Config(format!("mailbox {:?}: {r}", self.name)));
        if self.name.trim().is_empty() {
            return bad("name is empty");
        }
        if self.username.is_empty() {
            return bad("username is empty");
        }
        let ways = [self.password.is_some(), self.oauth2_token_file.is_some(), self.oauth2_token_command.is_some()].iter().filter(|b| **b).count();
        if ways != 1 {
            return bad("set exactly one of password, oauth2_token_file, oauth2_token_command");
        }
        if self.after_ingest == AfterIngest::Move && self.move_to.as_deref().unwrap_or("").is_empty() {
            return bad("after_ingest = \"move\" needs move_to");
        }
        Ok(())
    }
}

/// The byte stream under IMAP: plain TCP (loopback, tests) or TLS.
#[derive(Debug)]
pub enum ImapStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for ImapStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ImapStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An authenticated async-imap session.
pub type Session = async_imap::Session<ImapStream>;

async fn within<T>(secs: u64, command: &'static str, f: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(Duration::from_secs(secs.max(1)), f).await.map_err(|_| ImapError::Timeout { command, secs })
}

fn tls_connector(cfg: &MailboxConfig) -> Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &cfg.ca_file {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path).map_err(|e| ImapError::Config(format!("ca_file {}: {e}", path.display())))?;
        for c in certs {
            let c = c.map_err(|e| ImapError::Config(format!("ca_file {}: {e}", path.display())))?;
            roots.add(c).map_err(|e| ImapError::Config(format!("ca_file {}: {e}", path.display())))?;
        }
    }
    // The provider is named here, not taken from the process default, so that
    // a second provider compiled in by some dependency cannot make this panic.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| ImapError::Config(format!("tls: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn wrap_tls(cfg: &MailboxConfig, tcp: TcpStream) -> Result<ImapStream> {
    let name = rustls_pki_types::ServerName::try_from(cfg.host.clone()).map_err(|e| ImapError::Config(format!("host {:?}: {e}", cfg.host)))?;
    let tls = within(cfg.timeout_secs, "tls handshake", tls_connector(cfg)?.connect(name, tcp)).await?.map_err(|source| ImapError::Tls { host: cfg.host.clone(), source })?;
    Ok(ImapStream::Tls(Box::new(tls)))
}

/// Reads the greeting; refuses a `BYE`.
async fn greeting(client: &mut async_imap::Client<ImapStream>, secs: u64) -> Result<()> {
    let r = within(secs, "greeting", client.read_response()).await?.map_err(|e| ImapError::Protocol { command: "greeting", source: e.into() })?;
    match r {
        Some(r) if !matches!(r.parsed(), async_imap::imap_proto::Response::Data { status: async_imap::imap_proto::Status::Bye, .. }) => Ok(()),
        _ => Err(ImapError::Closed),
    }
}

/// The XOAUTH2 initial response (RFC 7628 style, as Gmail and Microsoft 365 expect).
pub fn xoauth2_response(user: &str, token: &str) -> String {
    format!("user={user}\x01auth=Bearer {token}\x01\x01")
}

/// Answers the first challenge with the token; an error challenge after
/// that gets the empty answer the mechanism asks for, so the server ends
/// with NO instead of waiting.
struct XOAuth2 {
    response: String,
    sent: bool,
}

impl async_imap::Authenticator for XOAuth2 {
    type Response = String;
    fn process(&mut self, _challenge: &[u8]) -> String {
        if self.sent {
            String::new()
        } else {
            self.sent = true;
            self.response.clone()
        }
    }
}

/// The current access token: from the file, or the command's stdout.
pub async fn read_token(cfg: &MailboxConfig) -> Result<String> {
    let token = if let Some(path) = &cfg.oauth2_token_file {
        tokio::fs::read_to_string(path).await.map_err(|e| ImapError::Token(format!("{}: {e}", path.display())))?
    } else if let Some(cmd) = &cfg.oauth2_token_command {
        let out = within(cfg.timeout_secs, "token command", tokio::process::Command::new("sh").arg("-c").arg(cmd).kill_on_drop(true).output())
            .await?
            .map_err(|e| ImapError::Token(format!("cannot run the token command: {e}")))?;
        if !out.status.success() {
            return Err(ImapError::Token(format!("the token command exited with {}", out.status)));
        }
        String::from_utf8(out.stdout).map_err(|_| ImapError::Token("the token command printed non-utf-8 bytes".into()))?
    } else {
        return Err(ImapError::Config("no oauth2 token source".into()));
    };
    let token = token.trim().to_string();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(ImapError::Token("the token is empty or contains whitespace".into()));
    }
    Ok(token)
}

/// Connects, secures and logs in: an authenticated session.
#[tracing::instrument(skip_all, fields(mailbox = %cfg.name, host = %cfg.host, port = cfg.port()))]
pub async fn connect(cfg: &MailboxConfig) -> Result<Session> {
    let addr = format!("{}:{}", cfg.host, cfg.port());
    let tcp = within(cfg.timeout_secs, "connect", TcpStream::connect(&addr)).await?.map_err(|source| ImapError::Connect { addr: addr.clone(), source })?;
    let _ = tcp.set_nodelay(true);
    let client = match cfg.tls {
        TlsMode::Tls => {
            let mut c = async_imap::Client::new(wrap_tls(cfg, tcp).await?);
            greeting(&mut c, cfg.timeout_secs).await?;
            c
        }
        TlsMode::None => {
            let mut c = async_imap::Client::new(ImapStream::Plain(tcp));
            greeting(&mut c, cfg.timeout_secs).await?;
            c
        }
        TlsMode::Starttls => {
            let mut c = async_imap::Client::new(ImapStream::Plain(tcp));
            greeting(&mut c, cfg.timeout_secs).await?;
            within(cfg.timeout_secs, "starttls", c.run_command_and_check_ok("STARTTLS", None)).await?.map_err(|source| ImapError::Protocol { command: "starttls", source })?;
            let ImapStream::Plain(tcp) = c.into_inner() else { unreachable!("plain before starttls") };
            // No greeting after STARTTLS: the session goes on inside TLS.
            async_imap::Client::new(wrap_tls(cfg, tcp).await?)
        }
    };
    let session = if cfg.password.is_some() {
        let pw = cfg.password.as_deref().unwrap_or_default();
        within(cfg.timeout_secs, "login", client.login(&cfg.username, pw)).await?.map_err(|(source, _)| ImapError::Auth { user: cfg.username.clone(), source })?
    } else {
        let token = read_token(cfg).await?;
        let auth = XOAuth2 { response: xoauth2_response(&cfg.username, &token), sent: false };
        within(cfg.timeout_secs, "authenticate", client.authenticate("XOAUTH2", auth)).await?.map_err(|(source, _)| ImapError::Auth { user: cfg.username.clone(), source })?
    };
    tracing::debug!("logged in");
    Ok(session)
}

/// A selected folder as the watcher sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Folder {
    pub uidvalidity: u32,
    pub exists: u32,
}

/// One fetched message.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub uid: u32,
    pub raw: Vec<u8>,
}

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The server announced a change (or the poll interval passed).
    Changed,
    /// The IDLE was re-issued after `idle_reissue_secs` without news.
    Reissue,
    /// Shutdown was requested.
    Shutdown,
}

/// The seam between the watcher and IMAP. The watcher is written against it
/// so that its checkpoint, rescan and shutdown logic is tested without a server.
pub trait MailboxSession: Send {
    fn select(&mut self, folder: &str) -> impl Future<Output = Result<Folder>> + Send;
    /// UIDs greater than `after`, ascending.
    fn uids_after(&mut self, after: u32) -> impl Future<Output = Result<Vec<u32>>> + Send;
    /// The exact bytes of these messages (`BODY.PEEK[]`: they stay unseen).
    fn fetch(&mut self, uids: &[u32]) -> impl Future<Output = Result<Vec<Fetched>>> + Send;
    /// Flags or moves a message already stored.
    fn after_ingest(&mut self, uid: u32, action: AfterIngest, keyword: &str, move_to: &str) -> impl Future<Output = Result<()>> + Send;
    /// Waits for news: IDLE when `idle`, else `poll` then a NOOP.
    fn wait(&mut self, idle: bool, poll: Duration, reissue: Duration, shutdown: &mut crate::serve::Shutdown) -> impl Future<Output = Result<Wake>> + Send;
    fn logout(&mut self) -> impl Future<Output = ()> + Send;
}

/// Opens sessions for one mailbox.
pub trait Connect: Send + Sync {
    type Session: MailboxSession;
    /// Connects and logs in. The `bool` says whether the server announced IDLE.
    fn connect(&self) -> impl Future<Output = Result<(Self::Session, bool)>> + Send;
}

/// The real server behind a [`MailboxConfig`].
#[derive(Debug, Clone)]
pub struct ImapConnector {
    pub cfg: MailboxConfig,
}

impl Connect for ImapConnector {
    type Session = ImapSession;
    async fn connect(&self) -> Result<(ImapSession, bool)> {
        let mut s = connect(&self.cfg).await?;
        let caps = within(self.cfg.timeout_secs, "capability", s.capabilities()).await?.map_err(|source| ImapError::Protocol { command: "capability", source })?;
        let idle = caps.has_str("IDLE");
        let has_move = caps.has_str("MOVE");
        Ok((ImapSession { session: Some(s), timeout: self.cfg.timeout_secs, has_move, news: false }, idle))
    }
}

/// A live session (None once the connection is known to be broken).
pub struct ImapSession {
    session: Option<Session>,
    timeout: u64,
    has_move: bool,
    /// An EXISTS/RECENT came in while we were busy with other commands:
    /// sync again before idling, or that message would wait for the next wake.
    news: bool,
}

fn proto(command: &'static str) -> impl FnOnce(async_imap::error::Error) -> ImapError {
    move |source| match source {
        async_imap::error::Error::ConnectionLost => ImapError::Closed,
        source => ImapError::Protocol { command, source },
    }
}

/// Quotes a string for an IMAP command.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl ImapSession {
    fn s(&mut self) -> Result<&mut Session> {
        self.session.as_mut().ok_or(ImapError::Closed)
    }

    /// Empties the unsolicited-responses channel: it holds 100 and drops the
    /// rest; we re-read the folder state ourselves, so the content is not needed.
    fn drain(&mut self) {
        if let Some(s) = self.session.as_mut() {
            while let Ok(r) = s.unsolicited_responses.try_recv() {
                if matches!(r, async_imap::types::UnsolicitedResponse::Exists(_) | async_imap::types::UnsolicitedResponse::Recent(_)) {
                    self.news = true;
                }
            }
        }
    }
}

impl MailboxSession for ImapSession {
    async fn select(&mut self, folder: &str) -> Result<Folder> {
        let t = self.timeout;
        let m = within(t, "select", self.s()?.select(folder)).await?.map_err(proto("select"))?;
        self.drain();
        let uidvalidity = m.uid_validity.ok_or_else(|| ImapError::Protocol { command: "select", source: async_imap::error::Error::Bad("no UIDVALIDITY in SELECT answer".into()) })?;
        Ok(Folder { uidvalidity, exists: m.exists })
    }

    async fn uids_after(&mut self, after: u32) -> Result<Vec<u32>> {
        let t = self.timeout;
        let s = self.s()?;
        let mut uids: Vec<u32> = within(t, "uid search", s.uid_search(format!("UID {}:*", after.saturating_add(1)))).await?.map_err(proto("uid search"))?.into_iter().collect();
        self.drain();
        // `N:*` always matches the highest UID, even when it is below N.
        uids.retain(|u| *u > after);
        uids.sort_unstable();
        Ok(uids)
    }

    async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<Fetched>> {
        if uids.is_empty() {
            return Ok(vec![]);
        }
        let set = uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let t = self.timeout;
        let s = self.s()?;
        let fetched: Vec<Fetched> = within(t, "uid fetch", async {
            let stream = s.uid_fetch(&set, "(UID BODY.PEEK[])").await?;
            let all: Vec<_> = stream.try_collect().await?;
            Ok::<_, async_imap::error::Error>(all.into_iter().filter_map(|f| Some(Fetched { uid: f.uid?, raw: f.body()?.to_vec() })).collect())
        })
        .await?
        .map_err(proto("uid fetch"))?;
        self.drain();
        let mut fetched = fetched;
        fetched.sort_by_key(|f| f.uid);
        Ok(fetched)
    }

    async fn after_ingest(&mut self, uid: u32, action: AfterIngest, keyword: &str, move_to: &str) -> Result<()> {
        let t = self.timeout;
        let has_move = self.has_move;
        let s = self.s()?;
        match action {
            AfterIngest::Leave => {}
            AfterIngest::Keyword => {
                within(t, "uid store", async {
                    let st = s.uid_store(uid.to_string(), format!("+FLAGS ({keyword})")).await?;
                    st.try_collect::<Vec<_>>().await.map(|_| ())
                })
                .await?
                .map_err(proto("uid store"))?;
            }
            AfterIngest::Move if has_move => within(t, "uid move", s.uid_mv(uid.to_string(), move_to)).await?.map_err(proto("uid move"))?,
            AfterIngest::Move => {
                within(t, "uid copy", s.uid_copy(uid.to_string(), move_to)).await?.map_err(proto("uid copy"))?;
                within(t, "uid store", async {
                    let st = s.uid_store(uid.to_string(), "+FLAGS (\\Deleted)").await?;
                    st.try_collect::<Vec<_>>().await.map(|_| ())
                })
                .await?
                .map_err(proto("uid store"))?;
                within(t, "uid expunge", async {
                    let st = s.uid_expunge(uid.to_string()).await?;
                    st.try_collect::<Vec<_>>().await.map(|_| ())
                })
                .await?
                .map_err(proto("uid expunge"))?;
            }
        }
        self.drain();
        Ok(())
    }

    async fn wait(&mut self, idle: bool, poll: Duration, reissue: Duration, shutdown: &mut crate::serve::Shutdown) -> Result<Wake> {
        let t = self.timeout;
        if !idle {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.recv() => return Ok(Wake::Shutdown),
            }
            within(t, "noop", self.s()?.noop()).await?.map_err(proto("noop"))?;
            self.drain();
            return Ok(Wake::Changed);
        }
        self.drain();
        if std::mem::take(&mut self.news) {
            // Mail arrived during the last sync; IDLE would not report it again.
            return Ok(Wake::Changed);
        }
        let session = self.session.take().ok_or(ImapError::Closed)?;
        let early = session.unsolicited_responses.clone();
        let mut handle = session.idle();
        within(t, "idle", handle.init()).await?.map_err(proto("idle"))?;
        // An EXISTS sent between the IDLE command and its `+` goes to the
        // unsolicited channel, not to the wait below.
        let mut arrived = false;
        while let Ok(r) = early.try_recv() {
            arrived |= matches!(r, async_imap::types::UnsolicitedResponse::Exists(_) | async_imap::types::UnsolicitedResponse::Recent(_));
        }
        let (wake, lost) = if arrived {
            (Wake::Changed, false)
        } else {
            // The library's own timeout is reset by every `* OK Still here`
            // keepalive, so the re-issue deadline is ours.
            let (fut, _stop) = handle.wait_with_timeout(reissue + Duration::from_secs(60));
            tokio::select! {
                r = fut => match r {
                    Ok(IdleResponse::NewData(d)) if matches!(d.parsed(), async_imap::imap_proto::Response::Data { status: async_imap::imap_proto::Status::Bye, .. }) => (Wake::Changed, true),
                    Ok(IdleResponse::NewData(_)) => (Wake::Changed, false),
                    Ok(IdleResponse::Timeout) => (Wake::Reissue, false),
                    // Not asked for: the stream ended, the server went away.
                    Ok(IdleResponse::ManualInterrupt) => (Wake::Changed, true),
                    Err(e) => return Err(proto("idle")(e)),
                },
                _ = tokio::time::sleep(reissue) => (Wake::Reissue, false),
                _ = shutdown.recv() => (Wake::Shutdown, false),
            }
        };
        if lost {
            return Err(ImapError::Closed);
        }
        let session = within(t, "idle done", handle.done()).await?.map_err(proto("idle done"))?;
        self.session = Some(session);
        self.drain();
        self.news = false;
        Ok(wake)
    }

    async fn logout(&mut self) {
        if let Some(mut s) = self.session.take() {
            let _ = within(5, "logout", s.logout()).await;
        }
    }
}

/// Where the copies of what we send are kept, and searched after a crash.
pub trait SentFolder: Send + Sync {
    /// Appends the exact bytes with `\Seen`.
    fn append_sent<'a>(&'a self, raw: &'a [u8]) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;
    /// Whether a message with this Message-ID (without `<>`) is there.
    fn sent_contains<'a>(&'a self, message_id: &'a str) -> Pin<Box<dyn Future<Output = Result<bool>> + Send + 'a>>;
}

/// The `\Sent` folder of a configured mailbox, one connection per call.
#[derive(Debug, Clone)]
pub struct ImapSent {
    pub cfg: MailboxConfig,
}

/// The folder to use: the configured override, else the one LIST marks `\Sent`.
pub async fn sent_folder_name(s: &mut Session, cfg: &MailboxConfig) -> Result<String> {
    if let Some(f) = &cfg.sent_folder {
        return Ok(f.clone());
    }
    let names: Vec<_> = within(cfg.timeout_secs, "list", async { s.list(Some(""), Some("*")).await?.try_collect::<Vec<_>>().await }).await?.map_err(proto("list"))?;
    names.iter().find(|n| n.attributes().iter().any(|a| matches!(a, NameAttribute::Sent))).map(|n| n.name().to_string()).ok_or(ImapError::NoSentFolder)
}

impl SentFolder for ImapSent {
    fn append_sent<'a>(&'a self, raw: &'a [u8]) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(async move {
            let mut s = connect(&self.cfg).await?;
            let folder = sent_folder_name(&mut s, &self.cfg).await?;
            within(self.cfg.timeout_secs, "append", s.append(&folder, Some("(\\Seen)"), None, raw)).await?.map_err(proto("append"))?;
            let _ = within(5, "logout", s.logout()).await;
            Ok(())
        })
    }

    fn sent_contains<'a>(&'a self, message_id: &'a str) -> Pin<Box<dyn Future<Output = Result<bool>> + Send + 'a>> {
        Box::pin(async move {
            let mut s = connect(&self.cfg).await?;
            let folder = sent_folder_name(&mut s, &self.cfg).await?;
            let t = self.cfg.timeout_secs;
            within(t, "examine", s.examine(&folder)).await?.map_err(proto("examine"))?;
            let hits = within(t, "uid search", s.uid_search(format!("HEADER Message-ID {}", quoted(&format!("<{message_id}>"))))).await?.map_err(proto("uid search"))?;
            let _ = within(5, "logout", s.logout()).await;
            Ok(!hits.is_empty())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoauth2_initial_response_has_the_sasl_layout() {
        assert_eq!(xoauth2_response("a@b.fr", "tok"), "user=a@b.fr\x01auth=Bearer tok\x01\x01");
        let mut a = XOAuth2 { response: "r".into(), sent: false };
        use async_imap::Authenticator;
        assert_eq!(a.process(b""), "r");
        assert_eq!(a.process(b"{\"status\":\"401\"}"), "", "an error challenge gets an empty answer");
    }

    #[test]
    fn config_needs_exactly_one_secret_and_never_prints_it() {
        let mut c = MailboxConfig { username: "u".into(), password: Some("hunter2".into()), ..Default::default() };
        assert!(c.validate().is_ok());
        assert!(!format!("{c:?}").contains("hunter2"));
        c.oauth2_token_file = Some("/t".into());
        assert!(c.validate().is_err());
        c.oauth2_token_file = None;
        c.after_ingest = AfterIngest::Move;
        assert!(c.validate().is_err());
        assert_eq!(c.port(), 993);
        c.tls = TlsMode::Starttls;
        assert_eq!(c.port(), 143);
    }

    #[test]
    fn quotes_search_strings() {
        assert_eq!(quoted("<a\"b@c>"), "\"<a\\\"b@c>\"");
    }
}

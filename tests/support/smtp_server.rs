//! A real SMTP server inside the test process: mailin's protocol engine behind
//! a std listener on 127.0.0.1:0, recording each message's envelope and the
//! exact DATA bytes. No shutdown: the threads end with the test process.

#![allow(dead_code)]

use dispute_desk::mail::smtp::SmtpConfig;
use mailin::{response, Action, Handler, Response, SessionBuilder};
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One message as the server saw it: envelope and DATA bytes.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: Vec<u8>,
}

/// Records every accepted message; `rcpt_reply` lets a test make the server
/// refuse recipients.
#[derive(Clone)]
struct Recorder {
    inbox: Arc<Mutex<Vec<Received>>>,
    rcpt_reply: Response,
    current: Option<Received>,
}

impl Handler for Recorder {
    fn rcpt(&mut self, _to: &str) -> Response {
        self.rcpt_reply.clone()
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.current = Some(Received { from: from.to_string(), to: to.to_vec(), data: Vec::new() });
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(current) = self.current.as_mut() {
            current.data.extend_from_slice(buf);
        }
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        // Recorded before the 250 goes out, so it is there when send() returns.
        if let Some(done) = self.current.take() {
            self.inbox.lock().unwrap().push(done);
        }
        response::OK
    }
}

pub struct TestSmtp {
    pub config: SmtpConfig,
    pub inbox: Arc<Mutex<Vec<Received>>>,
}

impl TestSmtp {
    pub fn received(&self) -> Vec<Received> {
        self.inbox.lock().unwrap().clone()
    }
}

/// Starts an SMTP server on a free loopback port, one thread per connection.
pub fn spawn_smtp(rcpt_reply: Response) -> TestSmtp {
    spawn_smtp_on(0, rcpt_reply)
}

/// Same, on a given port (0: any free one), e.g. a server that "comes back".
pub fn spawn_smtp_on(port: u16, rcpt_reply: Response) -> TestSmtp {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind loopback");
    let port = listener.local_addr().unwrap().port();
    let inbox = Arc::new(Mutex::new(Vec::new()));
    let handler = Recorder { inbox: inbox.clone(), rcpt_reply, current: None };
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handler = handler.clone();
            std::thread::spawn(move || serve_connection(stream, handler));
        }
    });
    TestSmtp { config: SmtpConfig { port, timeout_secs: 5, ..SmtpConfig::default() }, inbox }
}

/// Feeds the client's lines to mailin's session and writes back its replies.
fn serve_connection(stream: TcpStream, handler: Recorder) -> std::io::Result<()> {
    let peer = stream.peer_addr()?.ip();
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut session = SessionBuilder::new("smtp.test").build(peer, handler);
    session.greeting().write_to(&mut writer)?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let reply = session.process(&line);
        match reply.action {
            Action::NoReply => {}
            Action::Close => return reply.write_to(&mut writer),
            Action::Reply | Action::UpgradeTls => reply.write_to(&mut writer)?,
        }
    }
}

/// A loopback port with nothing listening on it.
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

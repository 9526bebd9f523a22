//! SmtpSender against a real SMTP server running inside the test process
//! (mailin's protocol engine behind a std listener on 127.0.0.1:0): what
//! render() returns is exactly what the server receives, and failures are
//! classified for the outbox's retry logic.
//!
//! mailin rather than mailin-embedded: mailin-embedded 0.8 does not compile
//! without its default `rtls` feature, and that feature pulls rustls with
//! aws-lc-rs next to our ring provider. The SMTP engine is the same.

use dispute_desk::domain::EmailAddress;
use dispute_desk::mail::smtp::{
    new_message_id, render, reply_subject, OutgoingMail, SendMail, SmtpConfig, SmtpError,
    SmtpSender,
};
use mailin::{response, Action, Handler, Response, SessionBuilder};
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One message as the server saw it: envelope and DATA bytes.
#[derive(Debug, Clone)]
struct Received {
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
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
        self.current = Some(Received {
            from: from.to_string(),
            to: to.to_vec(),
            data: Vec::new(),
        });
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

struct TestSmtp {
    config: SmtpConfig,
    inbox: Arc<Mutex<Vec<Received>>>,
}

/// Starts an SMTP server on a free loopback port, one thread per connection.
/// There is no shutdown: the threads end with the test process.
fn spawn_smtp(rcpt_reply: Response) -> TestSmtp {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().unwrap().port();
    let inbox = Arc::new(Mutex::new(Vec::new()));
    let handler = Recorder {
        inbox: inbox.clone(),
        rcpt_reply,
        current: None,
    };
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handler = handler.clone();
            std::thread::spawn(move || serve_connection(stream, handler));
        }
    });
    TestSmtp {
        config: SmtpConfig {
            port,
            timeout_secs: 5,
            ..SmtpConfig::default()
        },
        inbox,
    }
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
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).unwrap()
}

fn reply() -> OutgoingMail {
    OutgoingMail {
        from: addr("compta@fournisseur.fr"),
        from_name: Some("Service comptabilité".to_string()),
        to: vec![addr("m.lefevre@client.fr")],
        cc: vec![addr("commercial@fournisseur.fr")],
        subject: reply_subject("Facture FA-2026-00123 : prix unitaire erroné"),
        body_text: "Bonjour,\n\nNous émettons un avoir de 150,00 € sur la facture FA-2026-00123.\n.\n..\nCordialement,\nLa comptabilité\n"
            .to_string(),
        message_id: new_message_id("fournisseur.fr"),
        in_reply_to: Some("CAB1234@mail.client.fr".to_string()),
        references: vec!["first.1@mail.client.fr".to_string(), "CAB1234@mail.client.fr".to_string()],
        date: chrono::Utc::now(),
    }
}

#[tokio::test]
async fn sends_exactly_the_rendered_bytes_once() {
    let smtp = spawn_smtp(response::OK);
    let sender = SmtpSender::new(&smtp.config).unwrap();
    let mail = reply();
    let raw = render(&mail).unwrap();
    let recipients = [mail.to.clone(), mail.cc.clone()].concat();

    sender
        .send(&mail.from, &recipients, &raw)
        .await
        .expect("server accepts the message");

    let inbox = smtp.inbox.lock().unwrap().clone();
    assert_eq!(inbox.len(), 1, "exactly one message received");
    let got = &inbox[0];
    // lettre ends DATA with CRLF.CRLF; the server keeps the first CRLF.
    let expected = [raw.as_slice(), b"\r\n"].concat();
    assert!(
        got.data == expected,
        "bytes differ:\n{}\n---\n{}",
        String::from_utf8_lossy(&got.data),
        String::from_utf8_lossy(&raw)
    );
    assert_eq!(got.from, "compta@fournisseur.fr");
    assert_eq!(got.to, ["m.lefevre@client.fr", "commercial@fournisseur.fr"]);
    let text = String::from_utf8(got.data.clone()).unwrap();
    assert!(
        text.contains(&format!("Message-ID: <{}>\r\n", mail.message_id)),
        "{text}"
    );
    assert!(
        text.contains("In-Reply-To: <CAB1234@mail.client.fr>\r\n"),
        "{text}"
    );
    assert!(
        text.contains("References: <first.1@mail.client.fr> <CAB1234@mail.client.fr>\r\n"),
        "{text}"
    );
}

#[tokio::test]
async fn resending_stored_bytes_keeps_the_message_id() {
    let smtp = spawn_smtp(response::OK);
    let sender = SmtpSender::new(&smtp.config).unwrap();
    let mail = reply();
    let raw = render(&mail).unwrap();

    sender.send(&mail.from, &mail.to, &raw).await.unwrap();
    sender.send(&mail.from, &mail.to, &raw).await.unwrap();

    let inbox = smtp.inbox.lock().unwrap().clone();
    assert_eq!(inbox.len(), 2);
    assert_eq!(inbox[0].data, inbox[1].data);
}

#[tokio::test]
async fn nothing_listening_is_transient() {
    let config = SmtpConfig {
        port: closed_port(),
        timeout_secs: 5,
        ..SmtpConfig::default()
    };
    let sender = SmtpSender::new(&config).unwrap();
    let mail = reply();
    let raw = render(&mail).unwrap();

    let err = sender.send(&mail.from, &mail.to, &raw).await.unwrap_err();

    assert!(err.is_transient(), "{err:?}");
    assert!(matches!(err, SmtpError::Transient(_)), "{err:?}");
}

#[tokio::test]
async fn silent_server_times_out_as_transient() {
    // Accepts the connection and never sends a greeting.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = SmtpConfig {
        port,
        timeout_secs: 1,
        ..SmtpConfig::default()
    };
    let sender = SmtpSender::new(&config).unwrap();
    let mail = reply();
    let raw = render(&mail).unwrap();

    let started = std::time::Instant::now();
    let err = sender.send(&mail.from, &mail.to, &raw).await.unwrap_err();

    assert!(err.is_transient(), "{err:?}");
    assert!(matches!(err, SmtpError::Timeout { secs: 1 }), "{err:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    drop(listener);
}

#[tokio::test]
async fn recipient_refused_with_5xx_is_permanent() {
    let smtp = spawn_smtp(response::NO_MAILBOX);
    let sender = SmtpSender::new(&smtp.config).unwrap();
    let mail = reply();
    let raw = render(&mail).unwrap();

    let err = sender.send(&mail.from, &mail.to, &raw).await.unwrap_err();

    assert!(!err.is_transient(), "{err:?}");
    assert_eq!(err.smtp_code(), Some(550), "{err:?}");
    assert!(smtp.inbox.lock().unwrap().is_empty());
}

#[tokio::test]
async fn recipient_deferred_with_4xx_is_transient() {
    let smtp = spawn_smtp(response::OUT_OF_SPACE);
    let sender = SmtpSender::new(&smtp.config).unwrap();
    let mail = reply();
    let raw = render(&mail).unwrap();

    let err = sender.send(&mail.from, &mail.to, &raw).await.unwrap_err();

    assert!(err.is_transient(), "{err:?}");
    assert_eq!(err.smtp_code(), Some(452), "{err:?}");
    assert!(smtp.inbox.lock().unwrap().is_empty());
}

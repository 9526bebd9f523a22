//! mail: the mail edges. `maildir` reads `.eml` folders, `smtp` renders and
//! sends outgoing mail with lettre, `imap` talks to the mailbox, `watch` keeps
//! a mailbox in step with the store, `sent` keeps and searches the Sent copy.

pub mod imap;
pub mod maildir;
pub mod sent;
pub mod smtp;
pub mod watch;

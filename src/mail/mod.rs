//! mail: the mail edges. `maildir` reads `.eml` folders, `smtp` renders and
//! sends outgoing mail with lettre.

pub mod maildir;
pub mod smtp;

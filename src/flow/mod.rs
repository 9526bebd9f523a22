//! flow: one module per stage of DESIGN.md's flow. parse, link, decide and
//! draft are pure; ingest, pipeline, approve and outbox sit at the edges and
//! talk to the store and to SMTP; ahead runs the pure stages of the next
//! batch on a thread of its own.

pub mod ahead;
pub mod approve;
pub mod classify;
pub mod decide;
pub mod draft;
pub mod ingest;
pub mod link;
pub mod outbox;
pub mod parse;
pub mod payments;
pub mod pipeline;
pub mod remind;
pub mod workflow;

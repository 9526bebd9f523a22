//! dispute-desk: a self-hosted agent that reads the client mail that arrives
//! about invoices, links it to invoices and clients, works out what is
//! disputed and why, routes the case, drafts the reply and the call brief, and
//! sends nothing until a person has approved it. See README.md for the code
//! map and the invariants.

pub mod api;
pub mod app;
pub mod bench;
pub mod cluster;
pub mod config;
pub mod cpu;
pub mod domain;
pub mod einvoice;
pub mod eval;
pub mod flow;
pub mod gen;
pub mod gen_desk;
pub mod ledger;
pub mod llm;
pub mod mail;
pub mod policy;
pub mod serve;
pub mod store;
pub mod web;
pub mod webhooks;

//! Shared test helpers: real servers, an independent IMAP witness client,
//! the fixture corpus, a fault-injecting proxy and a scripted IMAP server.
#![allow(dead_code)]

pub mod corpus;
pub mod imap_client;
pub mod mutf7;
pub mod proxy;
pub mod scripted_server;
pub mod servers;

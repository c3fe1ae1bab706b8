//! Shared test helpers: real servers, an independent IMAP witness client,
//! the fixture corpus, a fault-injecting proxy, a scripted IMAP server and a
//! scripted HTTP server (JMAP), and private Dovecot instances a test may kill.
#![allow(dead_code)]

pub mod corpus;
pub mod http_server;
pub mod imap_client;
pub mod mutf7;
pub mod private_dovecot;
pub mod proxy;
pub mod scripted_server;
pub mod servers;

//! Shared test helpers: real servers, an independent IMAP witness client,
//! the fixture corpus, JWTs for the OAuth server, a fault-injecting proxy, HTTP relays in front
//! of Cyrus JMAP that count requests, answer chosen ones with errors, or give it a scripted
//! event stream (JMAP push), a scripted IMAP server, a scripted HTTP server (JMAP) with
//! streamed Server-Sent Events, a `mailreplica watch` run in the background and private
//! Dovecot instances a test may kill.
#![allow(dead_code)]

pub mod corpus;
pub mod event_stream;
pub mod http_count;
pub mod http_fault;
pub mod http_server;
pub mod imap_client;
pub mod jmap_push_proxy;
pub mod jwt;
pub mod mutf7;
pub mod private_dovecot;
pub mod proxy;
pub mod scripted_server;
pub mod servers;
pub mod watcher;

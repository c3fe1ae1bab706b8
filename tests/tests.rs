//! The single integration-test binary: every test module is a `mod` here.

mod auth;
mod bad_input;
mod check;
mod crash;
mod failback;
mod faults;
mod fidelity;
mod folder_names;
mod imap_copy;
mod imap_guarantees;
mod incremental;
mod jmap_cyrus;
mod jmap_push;
mod jmap_scripted;
mod keywords;
mod migrate;
mod mr;
mod rebuild;
mod support;
mod support_selftest;
mod sync_cyrus;
mod sync_dovecot;
mod sync_jmap;
mod validation;
mod watch;
mod watch_jmap;

//! The single integration-test binary: every test module is a `mod` here.

mod mr;
mod support;
mod support_selftest;
mod sync_dovecot;

//! The one integration-test binary; each module covers one command or component.

mod apply;
mod check;
mod connect;
mod crash;
mod emulator;
mod exact;
mod expiry;
mod genesys;
mod init;
mod matching;
mod mirror;
mod read_ahead;
mod reliability;
mod report;
mod secrets;
mod shared_quota;
mod state;
mod state_s3;
mod support;

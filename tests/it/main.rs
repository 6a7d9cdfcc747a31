//! The one integration-test binary; each module covers one command or component.

mod apply;
mod check;
mod connect;
mod crash;
mod emulator;
mod genesys;
mod init;
mod reliability;
mod report;
mod secrets;
mod state;
mod support;

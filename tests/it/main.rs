//! The one integration-test binary; each module covers one command or component.

mod apply;
mod check;
mod emulator;
mod genesys;
mod report;
mod support;

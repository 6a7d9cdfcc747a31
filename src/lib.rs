//! profilesync: bulk-sync customer profiles from CRM exports into contact-center systems.
//!
//! # Layout
//!
//! The modules follow the data: a record is read by [`source`], turned into target fields by
//! [`mapping`], checked by [`validate`] against [`schema`] (the APIs' own constraints), and
//! its outcome written by [`ledger`]; [`report`] prints progress and the summary.
//! [`logging`] sets up the `-v`/`-vv` logs on standard error and [`summary`] writes
//! `--summary-json`.
//! [`pipeline`] is the one module that wires threads and channels; [`config`] turns the TOML
//! file into the compiled plan every stage reads; [`run`] is the one place that builds a
//! run's objects, for [`cli`] (argument parsing) and [`demo`].
//! [`init`] writes a first config from an export's header and first records.
//! [`emulator`] is a loopback stand-in for the three target APIs. [`state`] is the local sync
//! state (hashes of what each target last accepted).

pub mod cli;
pub mod config;
pub mod demo;
pub mod emulator;
pub mod init;
pub mod ledger;
pub mod limiter;
pub mod logging;
pub mod mapping;
pub mod pipeline;
pub mod report;
pub mod retry;
pub mod run;
pub mod schema;
pub mod sigv4;
pub mod source;
pub mod state;
pub mod summary;
pub mod targets;
pub mod validate;

//! Managing a running instance from the host (issue 11).
//!
//! `ferrovisor run` names its instance and serves it: a runtime directory
//! ([`runtime`]) holds the instance's `api.sock` (this tool's clients),
//! `qemu-ctl.sock` (QEMU's end of the machine's control device), `pid`,
//! `token` and `info`. The `run` process owns the control channel to the
//! hypervisor ([`server`]): it relays requests from clients, keeps every VM's
//! console output in `logs/<vm>.log` and streams console output and events
//! to subscribers. Other `ferrovisor` commands (`ps`, `vm`, `stats`, `logs`,
//! `console`) are clients ([`client`]); the REST API ([`rest`], on
//! `http.sock` and optionally loopback TCP) is one too, inside the `run`
//! process, with Prometheus metrics ([`metrics`]).
//!
//! Both sockets speak `fv_ctrl` frames; replies are `fv_mgmt`'s machine line
//! protocol (or its human form), parsed by [`records`].

pub mod cli;
pub mod client;
pub mod metrics;
pub mod records;
pub mod rest;
pub mod runtime;
pub mod server;

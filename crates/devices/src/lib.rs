//! Device models (issue 3 brings the UART and PLIC).
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

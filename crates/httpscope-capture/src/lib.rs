//! httpscope's sources: everything that turns something observed on a host into
//! [`Batch`](httpscope_model::batch::Batch)es of transactions for the monitor.
//!
//! - [`packet`]: pcap/pcapng files and live AF_PACKET, IP and TCP reassembly, then the HTTP
//!   parser.
//! - [`etw`]: Windows HTTP.sys events (provider Microsoft-Windows-HttpService), decoded and
//!   correlated into transactions; offline replay works on every OS.
//! - `ebpf` (Linux): socket payload captured in the kernel, with pid and process name.
//! - `tls` (Linux): OpenSSL and GnuTLS plaintext through uprobes, in the same event shape.
//!
//! Sources never aggregate: they send transactions and their own counts, and the monitor
//! does the rest.
#![deny(missing_docs)]

#[cfg(target_os = "linux")]
pub mod ebpf;
pub mod etw;
pub mod packet;
#[cfg(target_os = "linux")]
pub mod tls;

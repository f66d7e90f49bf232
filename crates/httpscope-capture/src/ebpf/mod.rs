//! Linux kernel capture through eBPF (in progress).

/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Every struct and constant shared between the BPF programs (http.bpf.c) and user space
 * (crates/httpscope-capture/src/ebpf/event.rs). The Rust mirror is #[repr(C)] with the same
 * sizes asserted at compile time on both sides; keep the two files in step.
 *
 * Plain fixed-width integers only (no bool, no implicit padding).
 */
#ifndef HTTPSCOPE_BPF_H
#define HTTPSCOPE_BPF_H

/* The most payload bytes one event can carry; the load-time setting CAPTURE_LEN is clamped
 * to it. A power of two (the copy code relies on it). */
#define HS_MAX_CAPTURE 4096
/* The most iovec segments read per readv/writev/sendmsg/recvmsg. */
#define HS_MAX_IOV 16

/* http_event.kind */
#define HS_KIND_DATA 1  /* bytes sent or received on a socket */
#define HS_KIND_CLOSE 2 /* the socket reached TCP_CLOSE */
#define HS_KIND_DATA_SHORT 3 /* bytes, with the short header (HS_EVENT_SHORT_SIZE): no
                              * addresses, ports, family or comm; the socket's earlier full
                              * event gave them */

/* http_event.direction */
#define HS_DIR_SEND 0
#define HS_DIR_RECV 1

/* http_event.syscall */
#define HS_SYS_UNKNOWN 0
#define HS_SYS_READ 1
#define HS_SYS_WRITE 2
#define HS_SYS_READV 3
#define HS_SYS_WRITEV 4
#define HS_SYS_SENDTO 5
#define HS_SYS_RECVFROM 6
#define HS_SYS_SENDMSG 7
#define HS_SYS_RECVMSG 8
#define HS_SYS_SENDFILE 9
#define HS_SYS_SPLICE 10

/* http_event.flags */
#define HS_FLAG_FROM_START 1 /* the socket was established while we were attached and this
                              * is the first event of it sent to user space */
#define HS_FLAG_TRUNCATED 2  /* fewer bytes captured than transferred (cap or fault) */
#define HS_FLAG_NO_BUFFER 4  /* no user buffer known (sendfile, splice, ...): length only */

/* One event in the ring buffer: this header, then `captured` payload bytes. */
struct http_event {
	__u64 ts_ns;     /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 cookie;    /* socket cookie: unique per socket for the whole boot */
	__u32 tgid;      /* process id */
	__u32 tid;       /* thread id */
	__u32 len;       /* bytes the syscall transferred (0 for close events) */
	__u32 captured;  /* payload bytes following the header, <= HS_MAX_CAPTURE */
	__u16 family;    /* AF_INET (2) or AF_INET6 (10) */
	__u16 lport;     /* local port, host order */
	__u16 rport;     /* remote port, host order */
	__u8 kind;       /* HS_KIND_* */
	__u8 direction;  /* HS_DIR_* */
	__u8 syscall;    /* HS_SYS_* */
	__u8 flags;      /* HS_FLAG_* */
	__u8 _pad[2];    /* zero (the TLS programs put their library in _pad[0]) */
	__u32 lost;      /* data events: bytes of this socket in this direction whose events the
	                  * ring buffer had no room for since its last event of this direction
	                  * (the syscalls' `len`s, saturating at 2^32 - 1); user space makes them a
	                  * gap before this event's payload. In the short header too; 0 elsewhere */
	__u8 laddr[16];  /* local address: 4 bytes (IPv4) or 16 (IPv6), network order */
	__u8 raddr[16];  /* remote address, same layout */
	__u8 comm[16];   /* the process's name (its thread group leader's comm) */
};

#define HS_EVENT_SIZE 96
/* A short event is the first HS_EVENT_SHORT_SIZE bytes of struct http_event (family and
 * ports zero), then its payload. */
#define HS_EVENT_SHORT_SIZE 48

/* Per-CPU counters (one entry of a PERCPU_ARRAY), summed by user space. */
struct http_stats {
	__u64 events;          /* events written to the ring buffer */
	__u64 ringbuf_lost;    /* events the ring buffer had no room for */
	__u64 skipped_not_http;/* payload skipped by the in-kernel pre-check */
	__u64 length_only;     /* events of HTTP sockets sent without payload (no buffer) */
	__u64 read_faults;     /* user memory that could not be read */
	__u64 _reserved[3];    /* [0]: last forced ring-buffer wakeup on this CPU (ns) */
};

#define HS_STATS_SIZE 64

#endif

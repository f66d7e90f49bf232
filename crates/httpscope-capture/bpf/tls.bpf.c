// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * httpscope's TLS side: the plaintext of OpenSSL and GnuTLS calls, in the same event shape as
 * the socket path (struct http_event of httpscope.h), so user space reuses its decoding,
 * streams and HTTP parser. Kept in its own object so the socket programs are not disturbed.
 *
 *   uprobe    SSL_write, SSL_read, SSL_write_ex, SSL_read_ex      save (SSL *, buffer, length
 *             gnutls_record_send, gnutls_record_recv               out-pointer of the _ex
 *                                                                  variants) per thread
 *   uretprobe the same functions                                   copy up to CAPTURE_LEN bytes
 *                                                                  of what was moved, emit
 *   tp_btf/sock_send_length, sock_recv_length                      while a thread is inside one
 *                                                                  of those calls, note the
 *                                                                  socket it touches
 *   tp_btf/sched_process_exec                                      tell user space a program
 *                                                                  started (it may map a TLS
 *                                                                  library not attached yet)
 *
 * Tying a TLS object to its socket: the socket a TLS call reads or writes through is the one
 * the kernel's sock_send_length / sock_recv_length tracepoints report on the same thread
 * while the call runs. It is cached per (process, TLS object), so a later call that makes no
 * syscall (SSL_read served from bytes already buffered) still gets the 4-tuple. Limits (see
 * the README): a TLS object whose first data call makes no syscall has no known socket yet
 * (its events carry a synthetic key and no addresses); engines that do their socket I/O on
 * another thread or through memory BIOs/BIO pairs are never tied to a socket.
 *
 * The events' `_pad[0]` carries the library (HS_TLS_LIB_*), `syscall` is HS_SYS_UNKNOWN.
 *
 * Cost (bench/tls, BENCHMARKS.md "TLS source"): every probed call pays the uprobe mechanism
 * (a breakpoint trap at entry, the return trampoline) whatever runs; the programs here are
 * kept to what they must do: the call in progress lives in task storage (no hash lookup, no
 * delete), the return program reserves its event in the ring buffer and copies the plaintext
 * straight into it (no scratch buffer, no second copy), reads the process name through BTF,
 * and a call that moved no bytes (WANT_READ, errors) only updates the socket cache.
 *
 * Compiled by build.rs (clang -O2 -g -target bpf), stripped with llvm-strip -g, committed.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "httpscope.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

_Static_assert(sizeof(struct http_event) == HS_EVENT_SIZE, "http_event size");

/* The library in http_event._pad[0]. */
#define HS_TLS_LIB_OPENSSL 1
#define HS_TLS_LIB_GNUTLS 2

/* Load-time settings (rodata, set by the loader before load). */
const volatile __u32 CAPTURE_LEN = 512;
const volatile __u32 SELF_TGID = 0;
const volatile __u32 FILTER_PIDS_ON = 0;
const volatile __u32 FILTER_PORTS_ON = 0;
/* Only processes in this cgroup (v2) or below it: its id and its depth below the root (as in
 * http.bpf.c). */
const volatile __u32 FILTER_CGROUP_ON = 0;
const volatile __u32 FILTER_CGROUP_LEVEL = 0;
const volatile __u64 FILTER_CGROUP_ID = 0;
/* Wake the reader only when this much data waits; otherwise it polls on a short timer. */
const volatile __u64 WAKEUP_BYTES = 256 * 1024;

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

/* Synthetic stream key for a TLS object with no known socket: never a socket cookie (those
 * count up from 1), unique per (process, object) while the object lives. */
#define NO_SOCKET_KEY (1ULL << 63)

/* Per-CPU counters, summed by user space (mirror: src/tls/event.rs TlsRawStats). */
struct tls_stats {
	__u64 events;       /* events written to the ring buffer */
	__u64 ringbuf_lost; /* events the ring buffer had no room for */
	__u64 no_socket;    /* events of a TLS object with no known socket */
	__u64 read_faults;  /* user memory that could not be read */
	__u64 calls_lost;   /* calls not followed: no per-thread storage could be had */
	__u64 execs_lost;   /* exec notices the ring buffer had no room for */
	__u64 _reserved[2]; /* [0]: last forced ring-buffer wakeup on this CPU (ns) */
};
_Static_assert(sizeof(struct tls_stats) == 64, "tls_stats size");

/* The socket of a TLS object. */
struct tls_sock {
	__u64 cookie;
	__u16 family;
	__u16 lport;
	__u16 rport;
	__u16 _pad;
	__u8 laddr[16];
	__u8 raddr[16];
};

/* A TLS call in progress on one thread. */
struct tls_call {
	__u64 ssl;     /* SSL * or gnutls_session_t */
	__u64 buf;     /* the plaintext buffer */
	__u64 len_ptr; /* size_t * of SSL_read_ex/SSL_write_ex, else 0 */
	__u8 dir;      /* HS_DIR_* */
	__u8 lib;      /* HS_TLS_LIB_* */
	__u8 has_sock; /* a socket was seen during the call */
	__u8 active;   /* the thread is inside the call */
	__u8 _pad[4];
	struct tls_sock sock;
};

struct ssl_key {
	__u32 tgid;
	__u32 _pad;
	__u64 ssl;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
} HS_TLS_EVENTS SEC(".maps");

/* Pids of programs that just started (one __u32 each), for user space to look at. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} HS_TLS_EXECS SEC(".maps");

/* The TLS call a thread is in (`active`), in the thread's own storage: found from the task
 * without a hash lookup (the socket tracepoints, which run for every socket send/receive on
 * the host, look here first and leave at once), no table to fill up, freed with the thread. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct tls_call);
} HS_TLS_CALLS SEC(".maps");

/* The socket of each TLS object seen, by (process, object); LRU so it stays bounded. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ssl_key);
	__type(value, struct tls_sock);
} HS_TLS_SOCKS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tls_stats);
} HS_TLS_STATS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} HS_TLS_FPIDS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u8);
} HS_TLS_FPORTS SEC(".maps");

static __always_inline struct tls_stats *stats(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&HS_TLS_STATS, &zero);
}

static __always_inline int pid_wanted(__u32 tgid)
{
	if (tgid == SELF_TGID)
		return 0;
	if (FILTER_PIDS_ON && !bpf_map_lookup_elem(&HS_TLS_FPIDS, &tgid))
		return 0;
	/* The ancestor at the filter's depth is the filter's cgroup: the process is in it or
	 * below it. */
	if (FILTER_CGROUP_ON &&
	    bpf_get_current_ancestor_cgroup_id(FILTER_CGROUP_LEVEL) != FILTER_CGROUP_ID)
		return 0;
	return 1;
}

/* ---------------------------------------------------------------- entry */

static __always_inline int call_enter(__u64 ssl, __u64 buf, __u64 len_ptr, __u8 dir, __u8 lib)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!pid_wanted(id >> 32))
		return 0;
	struct tls_call *c = bpf_task_storage_get(&HS_TLS_CALLS, bpf_get_current_task_btf(), 0,
						  BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!c) {
		struct tls_stats *st = stats();
		if (st)
			st->calls_lost++;
		return 0;
	}
	c->ssl = ssl;
	c->buf = buf;
	c->len_ptr = len_ptr;
	c->dir = dir;
	c->lib = lib;
	c->has_sock = 0;
	c->active = 1;
	return 0;
}

/* int SSL_write(SSL *ssl, const void *buf, int num) */
SEC("uprobe")
int BPF_KPROBE(hs_ssl_write, void *ssl, const void *buf, int num)
{
	return call_enter((__u64)ssl, (__u64)buf, 0, HS_DIR_SEND, HS_TLS_LIB_OPENSSL);
}

/* int SSL_read(SSL *ssl, void *buf, int num) */
SEC("uprobe")
int BPF_KPROBE(hs_ssl_read, void *ssl, void *buf, int num)
{
	return call_enter((__u64)ssl, (__u64)buf, 0, HS_DIR_RECV, HS_TLS_LIB_OPENSSL);
}

/* int SSL_write_ex(SSL *s, const void *buf, size_t num, size_t *written) */
SEC("uprobe")
int BPF_KPROBE(hs_ssl_write_ex, void *ssl, const void *buf, __u64 num, __u64 *written)
{
	return call_enter((__u64)ssl, (__u64)buf, (__u64)written, HS_DIR_SEND, HS_TLS_LIB_OPENSSL);
}

/* int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes) */
SEC("uprobe")
int BPF_KPROBE(hs_ssl_read_ex, void *ssl, void *buf, __u64 num, __u64 *readbytes)
{
	return call_enter((__u64)ssl, (__u64)buf, (__u64)readbytes, HS_DIR_RECV,
			  HS_TLS_LIB_OPENSSL);
}

/* ssize_t gnutls_record_send(gnutls_session_t session, const void *data, size_t size) */
SEC("uprobe")
int BPF_KPROBE(hs_gnutls_send, void *session, const void *data, __u64 size)
{
	return call_enter((__u64)session, (__u64)data, 0, HS_DIR_SEND, HS_TLS_LIB_GNUTLS);
}

/* ssize_t gnutls_record_recv(gnutls_session_t session, void *data, size_t size) */
SEC("uprobe")
int BPF_KPROBE(hs_gnutls_recv, void *session, void *data, __u64 size)
{
	return call_enter((__u64)session, (__u64)data, 0, HS_DIR_RECV, HS_TLS_LIB_GNUTLS);
}

/* ---------------------------------------------------------------- socket */

/* Runs after every socket send/receive on the host: one hash lookup when the thread is not in
 * a TLS call. */
static __always_inline int on_sock(struct sock *sk)
{
	struct tls_call *c = bpf_task_storage_get(&HS_TLS_CALLS, bpf_get_current_task_btf(), 0, 0);
	if (!c || !c->active)
		return 0;
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	struct tls_sock *s = &c->sock;
	s->cookie = bpf_get_socket_cookie(sk);
	s->family = family;
	s->lport = sk->__sk_common.skc_num;
	s->rport = bpf_ntohs(sk->__sk_common.skc_dport);
	if (family == AF_INET) {
		__u32 l = sk->__sk_common.skc_rcv_saddr;
		__u32 r = sk->__sk_common.skc_daddr;
		__builtin_memset(s->laddr, 0, sizeof(s->laddr));
		__builtin_memset(s->raddr, 0, sizeof(s->raddr));
		__builtin_memcpy(s->laddr, &l, 4);
		__builtin_memcpy(s->raddr, &r, 4);
	} else {
		bpf_probe_read_kernel(s->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_probe_read_kernel(s->raddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
	c->has_sock = 1;
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(hs_tls_sock_send, struct sock *sk, int ret, int flags)
{
	return on_sock(sk);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(hs_tls_sock_recv, struct sock *sk, int ret, int flags)
{
	return on_sock(sk);
}

/* ---------------------------------------------------------------- return */

/* Ring-buffer flags for the next event: no wakeup per event (the reader polls on a timer), at
 * most one forced wakeup per CPU per millisecond while a backlog builds (as in http.bpf.c). */
static __always_inline __u64 wakeup_flags(struct tls_stats *st)
{
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (st && bpf_ringbuf_query(&HS_TLS_EVENTS, BPF_RB_AVAIL_DATA) >= WAKEUP_BYTES) {
		__u64 now = bpf_ktime_get_ns();
		if (now - st->_reserved[0] >= 1000000) {
			st->_reserved[0] = now;
			flags = BPF_RB_FORCE_WAKEUP;
		}
	}
	return flags;
}

/* Reserves an event with room for `room` payload bytes (a constant: the verifier sizes the
 * sample by it) and copies up to that much of the plaintext straight into it: no scratch
 * buffer, no second copy. The sample may be longer than header + captured; user space reads
 * `captured`. */
#define EMIT_CLASS(room)                                                                  \
	do {                                                                              \
		ev = bpf_ringbuf_reserve(&HS_TLS_EVENTS, sizeof(struct http_event) + (room), 0); \
		if (!ev)                                                                  \
			goto lost;                                                        \
		__u64 k = n;                                                              \
		barrier_var(k);                                                           \
		if (k > (room))                                                           \
			k = (room);                                                       \
		if (k > 0 && bpf_probe_read_user((void *)(ev + 1), k, (void *)buf)) {     \
			if (st)                                                           \
				st->read_faults++;                                        \
			k = 0;                                                            \
		}                                                                         \
		captured = k;                                                             \
	} while (0)

static __always_inline int call_return(long rc)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_call *c = bpf_task_storage_get(&HS_TLS_CALLS, bpf_get_current_task_btf(), 0, 0);
	if (!c || !c->active)
		return 0;
	c->active = 0;
	struct tls_stats *st = stats();
	__u64 moved = 0;
	if (c->len_ptr) {
		/* The _ex variants return 1 on success and the byte count through the pointer. */
		if (rc == 1 && bpf_probe_read_user(&moved, sizeof(moved), (void *)c->len_ptr)) {
			if (st)
				st->read_faults++;
			moved = 0;
		}
		if (rc != 1)
			moved = 0;
	} else if (rc > 0) {
		moved = rc;
	}

	struct ssl_key key = { .tgid = id >> 32, .ssl = c->ssl };
	struct tls_sock sock;
	int known = 0;
	if (c->has_sock) {
		sock = c->sock;
		known = 1;
		/* Update the cache only when it changed (a new connection on a reused object). */
		struct tls_sock *old = bpf_map_lookup_elem(&HS_TLS_SOCKS, &key);
		if (!old || old->cookie != sock.cookie)
			bpf_map_update_elem(&HS_TLS_SOCKS, &key, &sock, BPF_ANY);
	} else if (moved > 0) {
		/* A call that moved nothing (WANT_READ, ...) needs no cached socket. */
		struct tls_sock *old = bpf_map_lookup_elem(&HS_TLS_SOCKS, &key);
		if (old) {
			sock = *old;
			known = 1;
		}
	}
	__u64 buf = c->buf;
	__u64 ssl = c->ssl;
	__u8 dir = c->dir, lib = c->lib;
	if (moved == 0 || moved > 0x7fffffff)
		return 0;

	if (FILTER_PORTS_ON) {
		if (!known)
			return 0;
		if (!bpf_map_lookup_elem(&HS_TLS_FPORTS, &sock.lport) &&
		    !bpf_map_lookup_elem(&HS_TLS_FPORTS, &sock.rport))
			return 0;
	}

	__u64 n = moved;
	__u64 cap = CAPTURE_LEN;
	if (cap > HS_MAX_CAPTURE)
		cap = HS_MAX_CAPTURE;
	if (n > cap)
		n = cap;
	struct http_event *ev;
	__u32 captured = 0;
	/* Three sizes of sample: a request line and a few headers, a typical head, the most. */
	if (n <= 128)
		EMIT_CLASS(128);
	else if (n <= 512)
		EMIT_CLASS(512);
	else
		EMIT_CLASS(HS_MAX_CAPTURE);

	ev->ts_ns = bpf_ktime_get_ns();
	ev->tgid = id >> 32;
	ev->tid = (__u32)id;
	ev->len = moved;
	ev->captured = captured;
	ev->kind = HS_KIND_DATA;
	ev->direction = dir;
	ev->syscall = HS_SYS_UNKNOWN;
	ev->flags = captured < moved ? HS_FLAG_TRUNCATED : 0;
	__builtin_memset(ev->_pad, 0, sizeof(ev->_pad));
	ev->_pad[0] = lib;
	ev->lost = 0; /* reserved ring memory is not zeroed; losses are not tracked here */
	/* The thread group leader's name, read through BTF (no helper call per field). */
	struct task_struct *leader = bpf_get_current_task_btf()->group_leader;
	__u64 *comm = (__u64 *)ev->comm;
	comm[0] = *(__u64 *)&leader->comm[0];
	comm[1] = *(__u64 *)&leader->comm[8];
	if (known) {
		ev->cookie = sock.cookie;
		ev->family = sock.family;
		ev->lport = sock.lport;
		ev->rport = sock.rport;
		__builtin_memcpy(ev->laddr, sock.laddr, 16);
		__builtin_memcpy(ev->raddr, sock.raddr, 16);
	} else {
		/* Unknown socket: a key of its own, an all-zero IPv4 tuple (user space reports no
		 * addresses). */
		ev->cookie = NO_SOCKET_KEY | (((id >> 32) << 32) ^ (ssl & ~NO_SOCKET_KEY));
		ev->family = AF_INET;
		ev->lport = 0;
		ev->rport = 0;
		__builtin_memset(ev->laddr, 0, 16);
		__builtin_memset(ev->raddr, 0, 16);
		if (st)
			st->no_socket++;
	}
	bpf_ringbuf_submit(ev, wakeup_flags(st));
	if (st)
		st->events++;
	return 0;
lost:
	if (st)
		st->ringbuf_lost++;
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(hs_ssl_ret, long rc)
{
	return call_return(rc);
}

/* ---------------------------------------------------------------- exec */

SEC("tp_btf/sched_process_exec")
int BPF_PROG(hs_tls_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (bpf_ringbuf_output(&HS_TLS_EXECS, &tgid, sizeof(tgid), BPF_RB_NO_WAKEUP)) {
		struct tls_stats *st = stats();
		if (st)
			st->execs_lost++;
	}
	return 0;
}

// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * httpscope's kernel side: socket payload with process and 4-tuple, for HTTP parsing in user
 * space. Only tp_btf programs (measured on the target machines: they load and attach where
 * fentry/fexit get EPERM and kprobes are not built in; they need neither tracefs nor bpffs).
 *
 *   tp_btf/sock_send_length     after a socket send / receive, in process context with the
 *   tp_btf/sock_recv_length     struct sock at hand (kernel >= 6.3): find the user buffer of
 *                               read/write/readv/writev/sendto/recvfrom/sendmsg/recvmsg in the
 *                               syscall's saved registers (see current_args) and copy up to
 *                               CAPTURE_LEN bytes from every iovec segment into a ring-buffer
 *                               event; sendfile/splice are sent as lengths without payload
 *   tp_btf/inet_sock_set_state  note sockets established while attached (so user space knows
 *                               it saw them from their first byte); report TCP_CLOSE
 *
 * A cheap pre-check keeps non-HTTP traffic out of the ring buffer: a socket's payload is
 * sent only once one of its chunks started like an HTTP/1 message (or the HTTP/2 preface);
 * from then on every event of that socket is sent, with or without payload, so body sizes
 * stay right. Sockets established while attached whose first chunk is not HTTP are ignored
 * for good.
 *
 * Compiled by build.rs (clang -O2 -g -target bpf), stripped with llvm-strip -g, committed.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#include "httpscope.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

_Static_assert(sizeof(struct http_event) == HS_EVENT_SIZE, "http_event size");
_Static_assert(sizeof(struct http_stats) == HS_STATS_SIZE, "http_stats size");
_Static_assert(__builtin_offsetof(struct http_event, laddr) == HS_EVENT_SHORT_SIZE,
	       "the short header is the full one up to the addresses");

/* Load-time settings (rodata, set by the loader before load). */
const volatile __u32 CAPTURE_LEN = 512;
const volatile __u32 SELF_TGID = 0;
const volatile __u32 FILTER_PIDS_ON = 0;
const volatile __u32 FILTER_PORTS_ON = 0;
/* Only processes in this cgroup (v2) or below it: its id and its depth below the root. */
const volatile __u32 FILTER_CGROUP_ON = 0;
const volatile __u32 FILTER_CGROUP_LEVEL = 0;
const volatile __u64 FILTER_CGROUP_ID = 0;
/* A socket's events carry the short header (no addresses, no comm) once a full one was sent
 * less than this long ago; user space keeps a socket's stream at least this long after its
 * last event (its idle timeout is at least twice this), so it always knows the socket. */
const volatile __u64 FULL_EVERY_NS = 30ULL * 1000000000ULL;
/* Wake the reader only when this much data waits; otherwise it polls on a short timer. */
const volatile __u64 WAKEUP_BYTES = 256 * 1024;

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define MSG_PEEK 2

/* x86_64 syscall numbers */
#define NR_read 0
#define NR_write 1
#define NR_readv 19
#define NR_writev 20
#define NR_sendfile 40
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47
#define NR_splice 275

#define ARGS_NONE 0
#define ARGS_BUF 1
#define ARGS_IOV 2
#define ARGS_MSG 3

struct saved_args {
	__u64 ptr;   /* buffer, iovec array or msghdr (user addresses) */
	__u64 count; /* buffer length or iovec count */
	__u32 kind;  /* ARGS_* */
	__u32 syscall; /* HS_SYS_* */
};

#define SOCK_HTTP 1     /* a chunk looked like HTTP: send everything */
#define SOCK_FRESH 2    /* established while attached */
#define SOCK_IGNORED 4  /* fresh, and its first chunk was not HTTP */
#define SOCK_STARTED 8  /* its first event went to user space */

struct sock_state {
	__u32 flags;
	__u32 _pad;
	__u64 full_ts; /* when its last full event was made */
	/* Per direction (HS_DIR_*): bytes whose events the ring buffer had no room for, not yet
	 * told to user space; the next event of that direction carries them (http_event.lost). */
	__u32 lost[2];
};

struct scratch {
	struct http_event ev; /* sent with the first `captured` bytes of data, contiguous */
	/* Twice the cap, so that "offset <= cap" plus "length <= cap" is provably in bounds. */
	__u8 data[2 * HS_MAX_CAPTURE];
	struct iovec iov[HS_MAX_IOV];
};

/* One ring buffer per CPU, written by the programs running on that CPU: a ring shared by
 * every CPU made its spinlock and producer position move between CPUs at every event
 * (~150 ns per event measured on two vCPUs). The loader sizes the array to the possible
 * CPUs and puts one ring in each slot; user space merges them by timestamp (src/ebpf/ring.rs).
 * The template's size is only the template's: inner ring buffers may differ in size. */
struct hs_ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct hs_ring);
} HS_RINGS SEC(".maps");

/* Per-socket state lives in the socket itself (socket local storage): one pointer load to
 * find, freed with the socket, bounded by the sockets that exist, no LRU to evict an HTTP
 * socket under churn. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_state);
} HS_SOCKS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} HS_SCRATCH SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct http_stats);
} HS_STATS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} HS_FPIDS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u8);
} HS_FPORTS SEC(".maps");

static __always_inline struct http_stats *stats(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&HS_STATS, &zero);
}

/* The process filters: not ourselves, and the pid and cgroup filters when set. */
static __always_inline int pid_wanted(__u32 tgid)
{
	if (tgid == SELF_TGID)
		return 0;
	if (FILTER_PIDS_ON && !bpf_map_lookup_elem(&HS_FPIDS, &tgid))
		return 0;
	/* The ancestor at the filter's depth is the filter's cgroup: the process is in it or
	 * below it. One helper call, no map. */
	if (FILTER_CGROUP_ON &&
	    bpf_get_current_ancestor_cgroup_id(FILTER_CGROUP_LEVEL) != FILTER_CGROUP_ID)
		return 0;
	return 1;
}

/*
 * The syscall this thread is in, and its buffer arguments, read from the user registers the
 * kernel saved at syscall entry (bpf_task_pt_regs): orig_ax is the syscall number, si/dx the
 * buffer (or iovec array, or msghdr) and its length. This replaces a tp_btf/sys_enter +
 * sys_exit pair that saved the same values in a map: those two ran on every syscall of every
 * process on the host (measured: ~220 ns per syscall, ~10 syscalls per nginx request), this
 * runs only after socket sends and receives. Returns 0 when the syscall is one we copy from
 * or count (sendfile/splice: ARGS_NONE), -1 otherwise (io_uring, sendmmsg...: length only).
 */
static __always_inline int current_args(struct task_struct *task, struct saved_args *a)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!regs)
		return -1;
	long id = regs->orig_ax;
	switch (id) {
	case NR_read:
		a->kind = ARGS_BUF; a->syscall = HS_SYS_READ; break;
	case NR_write:
		a->kind = ARGS_BUF; a->syscall = HS_SYS_WRITE; break;
	case NR_sendto:
		a->kind = ARGS_BUF; a->syscall = HS_SYS_SENDTO; break;
	case NR_recvfrom:
		a->kind = ARGS_BUF; a->syscall = HS_SYS_RECVFROM; break;
	case NR_readv:
		a->kind = ARGS_IOV; a->syscall = HS_SYS_READV; break;
	case NR_writev:
		a->kind = ARGS_IOV; a->syscall = HS_SYS_WRITEV; break;
	case NR_sendmsg:
		a->kind = ARGS_MSG; a->syscall = HS_SYS_SENDMSG; break;
	case NR_recvmsg:
		a->kind = ARGS_MSG; a->syscall = HS_SYS_RECVMSG; break;
	case NR_sendfile:
		a->kind = ARGS_NONE; a->syscall = HS_SYS_SENDFILE; break;
	case NR_splice:
		a->kind = ARGS_NONE; a->syscall = HS_SYS_SPLICE; break;
	default:
		return -1;
	}
	a->ptr = regs->si;
	a->count = regs->dx;
	return 0;
}

/* The 4-tuple and family of an event. Plain loads through the BTF pointer (the verifier
 * turns them into fault-handled loads), not bpf_probe_read_kernel calls. */
static __always_inline void fill_socket(struct http_event *ev, const struct sock *sk, __u16 family)
{
	ev->family = family;
	ev->lport = sk->__sk_common.skc_num;
	ev->rport = bpf_ntohs(sk->__sk_common.skc_dport);
	if (family == AF_INET) {
		__u32 l = sk->__sk_common.skc_rcv_saddr;
		__u32 r = sk->__sk_common.skc_daddr;
		__builtin_memcpy(ev->laddr, &l, 4);
		__builtin_memset(ev->laddr + 4, 0, 12);
		__builtin_memcpy(ev->raddr, &r, 4);
		__builtin_memset(ev->raddr + 4, 0, 12);
	} else {
		const __u32 *l = sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32;
		const __u32 *r = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32;
		__u32 *el = (__u32 *)ev->laddr, *er = (__u32 *)ev->raddr;
		el[0] = l[0]; el[1] = l[1]; el[2] = l[2]; el[3] = l[3];
		er[0] = r[0]; er[1] = r[1]; er[2] = r[2]; er[3] = r[3];
	}
}

/* Process ids and name (the thread group leader's comm, as `ps` shows it): two loads through
 * BTF pointers instead of bpf_get_current_comm / bpf_probe_read_kernel. */
static __always_inline void fill_task(struct http_event *ev, struct task_struct *task, __u64 pid_tgid)
{
	ev->tgid = pid_tgid >> 32;
	ev->tid = (__u32)pid_tgid;
	const __u64 *c = (const __u64 *)task->group_leader->comm;
	__u64 *d = (__u64 *)ev->comm;
	d[0] = c[0];
	d[1] = c[1];
}

/* Returns 0 when the event went into the ring buffer. */
static __always_inline int output(void *s, __u32 hdr, __u32 captured, __u64 now,
				  struct http_stats *st)
{
	__u64 size = captured;
	barrier_var(size);
	if (size > HS_MAX_CAPTURE)
		size = HS_MAX_CAPTURE;
	size += hdr;
	/* The reader polls on a short timer, so events never ask for a wakeup, except when a
	 * backlog builds up; then at most one forced wakeup per CPU per millisecond: a forced
	 * wakeup is an irq_work (an IPI, a VM exit under virtualisation), and forcing one per
	 * event while the reader is behind was measured to cost the traced programs several
	 * microseconds per request. The backlog is looked at once every 32 events of a CPU
	 * (at most 32 x 4 KiB between looks, against a threshold of a quarter of the ring):
	 * bpf_ringbuf_query on every event was a helper call and a read of the reader's cache
	 * line each time. */
	__u32 cpu = bpf_get_smp_processor_id();
	void *ring = bpf_map_lookup_elem(&HS_RINGS, &cpu);
	if (!ring) {
		if (st)
			st->ringbuf_lost++;
		return -1;
	}
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (st && (st->events & 31) == 0 &&
	    bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) >= WAKEUP_BYTES &&
	    now - st->_reserved[0] >= 1000000) {
		st->_reserved[0] = now;
		flags = BPF_RB_FORCE_WAKEUP;
	}
	if (bpf_ringbuf_output(ring, s, size, flags)) {
		if (st)
			st->ringbuf_lost++;
		return -1;
	}
	if (st)
		st->events++;
	return 0;
}

/* Whether four bytes can start an HTTP/1 message (or the HTTP/2 preface). */
static __always_inline int looks_http(__u32 w)
{
#define W(a, b, c, d) ((__u32)(a) | (__u32)(b) << 8 | (__u32)(c) << 16 | (__u32)(d) << 24)
	switch (w) {
	case W('G', 'E', 'T', ' '):
	case W('P', 'O', 'S', 'T'):
	case W('P', 'U', 'T', ' '):
	case W('H', 'E', 'A', 'D'):
	case W('D', 'E', 'L', 'E'):
	case W('P', 'A', 'T', 'C'):
	case W('O', 'P', 'T', 'I'):
	case W('C', 'O', 'N', 'N'):
	case W('T', 'R', 'A', 'C'):
	case W('H', 'T', 'T', 'P'):
	case W('P', 'R', 'I', ' '):
		return 1;
	}
	return 0;
#undef W
}

/* The first segment of the saved buffer: its address and length. */
static __always_inline int first_segment(const struct saved_args *a, __u64 *base, __u64 *len)
{
	if (a->kind == ARGS_BUF) {
		*base = a->ptr;
		*len = a->count;
		return 0;
	}
	const struct iovec *iov;
	__u64 cnt;
	if (a->kind == ARGS_IOV) {
		iov = (const struct iovec *)a->ptr;
		cnt = a->count;
	} else if (a->kind == ARGS_MSG) {
		struct user_msghdr m;
		if (bpf_probe_read_user(&m, sizeof(m), (void *)a->ptr))
			return -1;
		iov = m.msg_iov;
		cnt = m.msg_iovlen;
	} else {
		return -1;
	}
	for (int i = 0; i < HS_MAX_IOV; i++) {
		struct iovec seg;
		if (i >= cnt)
			break;
		if (bpf_probe_read_user(&seg, sizeof(seg), &iov[i]))
			return -1;
		if (seg.iov_len) {
			*base = (__u64)seg.iov_base;
			*len = seg.iov_len;
			return 0;
		}
	}
	return -1;
}

/* The iovec array of a readv/writev/sendmsg/recvmsg, read into s->iov with one helper call
 * (not one per segment); returns how many segments were read. */
static __always_inline __u32 read_iov(struct scratch *s, const struct saved_args *a,
				      struct http_stats *st)
{
	const struct iovec *iov;
	__u64 cnt;
	if (a->kind == ARGS_IOV) {
		iov = (const struct iovec *)a->ptr;
		cnt = a->count;
	} else if (a->kind == ARGS_MSG) {
		/* msg_iov and msg_iovlen only */
		struct {
			const struct iovec *iov;
			__u64 len;
		} m;
		if (bpf_probe_read_user(&m, sizeof(m),
					(void *)(a->ptr + __builtin_offsetof(struct user_msghdr, msg_iov)))) {
			if (st)
				st->read_faults++;
			return 0;
		}
		iov = m.iov;
		cnt = m.len;
	} else {
		return 0;
	}
	if (cnt > HS_MAX_IOV)
		cnt = HS_MAX_IOV;
	__u64 bytes = cnt * sizeof(struct iovec);
	barrier_var(bytes);
	if (bytes > sizeof(s->iov))
		bytes = sizeof(s->iov);
	if (bytes == 0)
		return 0;
	if (bpf_probe_read_user(s->iov, bytes, iov)) {
		if (st)
			st->read_faults++;
		return 0;
	}
	return cnt;
}

/* Copies up to `want` bytes from the saved buffer into s->data; returns the count copied. */
static __always_inline __u32 copy_payload(struct scratch *s, const struct saved_args *a, __u64 want,
					  struct http_stats *st)
{
	if (a->kind == ARGS_BUF) {
		__u64 n = want;
		if (n > a->count)
			n = a->count;
		barrier_var(n);
		if (n > HS_MAX_CAPTURE)
			n = HS_MAX_CAPTURE;
		if (bpf_probe_read_user(s->data, n, (void *)a->ptr)) {
			if (st)
				st->read_faults++;
			return 0;
		}
		return n;
	}
	__u32 cnt = read_iov(s, a, st);
	__u64 off = 0;
	for (int i = 0; i < HS_MAX_IOV; i++) {
		if (i >= cnt || off >= want)
			break;
		__u64 n = s->iov[i].iov_len;
		if (n > want - off)
			n = want - off;
		/* clang 14: clamp in a 64-bit register the verifier can see, after a barrier. */
		barrier_var(n);
		if (n > HS_MAX_CAPTURE)
			n = HS_MAX_CAPTURE;
		__u64 o = off;
		barrier_var(o);
		if (o > HS_MAX_CAPTURE)
			break;
		if (n == 0)
			continue;
		if (bpf_probe_read_user(s->data + o, n, s->iov[i].iov_base)) {
			if (st)
				st->read_faults++;
			break;
		}
		off += n;
	}
	return off;
}

static __always_inline int port_wanted(const struct sock *sk)
{
	__u16 lport = sk->__sk_common.skc_num;
	__u16 rport = bpf_ntohs(sk->__sk_common.skc_dport);
	return bpf_map_lookup_elem(&HS_FPORTS, &lport) || bpf_map_lookup_elem(&HS_FPORTS, &rport);
}

/*
 * One send or receive. The order is the cheapest rejection first, and for a socket already
 * known to carry HTTP (the common case under load) only what the event needs: its state
 * (one pointer load into the socket), the registers of the syscall, one copy of the payload,
 * one ring-buffer write. Measured per request (nginx, 4 events; bench/ebpf/kcost.sh), the
 * payload copies and the ring-buffer write are about two thirds of the programs' time.
 */
static __always_inline int on_data(struct sock *sk, int ret, int flags, __u8 dir)
{
	if (ret <= 0)
		return 0;
	if (dir == HS_DIR_RECV && (flags & MSG_PEEK))
		return 0;
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!pid_wanted(pid_tgid >> 32))
		return 0;

	struct sock_state *state = bpf_sk_storage_get(&HS_SOCKS, sk, 0, 0);
	__u32 sflags = state ? state->flags : 0;
	if (sflags & SOCK_IGNORED)
		return 0;
	/* The port filter is a property of the socket: decided once, before it is marked HTTP,
	 * and remembered as SOCK_IGNORED when the socket has state. */
	if (FILTER_PORTS_ON && !(sflags & SOCK_HTTP) && !port_wanted(sk)) {
		if (state)
			state->flags = sflags | SOCK_IGNORED;
		return 0;
	}

	struct task_struct *task = bpf_get_current_task_btf();
	struct saved_args args = {};
	struct saved_args *a = current_args(task, &args) ? NULL : &args;
	struct http_stats *st = stats();

	if (!(sflags & SOCK_HTTP)) {
		/* The pre-check: the chunk must start like an HTTP message. */
		__u64 base = 0, len = 0;
		__u32 word = 0;
		if (!a || a->kind == ARGS_NONE || first_segment(a, &base, &len) || len < 4 ||
		    ret < 4 || bpf_probe_read_user(&word, 4, (void *)base)) {
			/* Nothing to look at: undecided, skipped. */
			if (st)
				st->skipped_not_http++;
			return 0;
		}
		if (!looks_http(word)) {
			if (st)
				st->skipped_not_http++;
			if (state && (sflags & SOCK_FRESH))
				state->flags = sflags | SOCK_IGNORED;
			return 0;
		}
		if (!state) {
			struct sock_state init = {};
			state = bpf_sk_storage_get(&HS_SOCKS, sk, &init, BPF_SK_STORAGE_GET_F_CREATE);
			if (!state)
				return 0;
		}
		state->flags |= SOCK_HTTP;
	}

	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&HS_SCRATCH, &zero);
	if (!s)
		return 0;
	struct http_event *ev = &s->ev;
	ev->ts_ns = bpf_ktime_get_ns();
	ev->cookie = bpf_get_socket_cookie(sk);
	ev->len = ret;
	ev->direction = dir;
	ev->flags = 0;
	ev->tgid = pid_tgid >> 32;
	ev->tid = (__u32)pid_tgid;
	ev->_pad[0] = 0;
	ev->_pad[1] = 0;
	/* Bytes of this direction lost since its last event: a gap user space puts before
	 * this payload (else a lost body chunk made the next request head count as body). */
	__u32 lost = state->lost[dir & 1];
	ev->lost = lost;
	/* The addresses and the process name matter to user space only when it first meets a
	 * socket: later events carry the short header (48 bytes less to fill, write and read),
	 * with a full one again at least every FULL_EVERY_NS. */
	int full = !(state->flags & SOCK_STARTED) || ev->ts_ns - state->full_ts >= FULL_EVERY_NS;
	if (full) {
		ev->kind = HS_KIND_DATA;
		fill_task(ev, task, pid_tgid);
		fill_socket(ev, sk, family);
		state->full_ts = ev->ts_ns;
	} else {
		ev->kind = HS_KIND_DATA_SHORT;
		ev->family = 0;
		ev->lport = 0;
		ev->rport = 0;
	}

	if (!(state->flags & SOCK_STARTED)) {
		if (state->flags & SOCK_FRESH)
			ev->flags |= HS_FLAG_FROM_START;
		state->flags |= SOCK_STARTED;
	}

	__u32 captured = 0;
	if (a && a->kind != ARGS_NONE) {
		ev->syscall = a->syscall;
		__u64 want = ret;
		__u64 cap = CAPTURE_LEN;
		if (cap > HS_MAX_CAPTURE)
			cap = HS_MAX_CAPTURE;
		if (want > cap)
			want = cap;
		captured = copy_payload(s, a, want, st);
	} else {
		ev->syscall = a ? a->syscall : HS_SYS_UNKNOWN;
		ev->flags |= HS_FLAG_NO_BUFFER;
		if (st)
			st->length_only++;
	}
	if (captured < (__u32)ret)
		ev->flags |= HS_FLAG_TRUNCATED;
	ev->captured = captured;
	int failed;
	if (full) {
		/* A full event the ring had no room for did not tell user space the socket: the
		 * next one is full again (not flagged from the start: bytes were lost). Left as
		 * sent, the socket's short events were dropped for up to FULL_EVERY_NS. */
		failed = output(s, sizeof(struct http_event), captured, ev->ts_ns, st);
		if (failed)
			state->full_ts = ev->ts_ns - FULL_EVERY_NS;
	} else {
		/* The short header is the full one's first 48 bytes, moved up against the
		 * payload (which starts right after the full header). */
		__u64 *from = (__u64 *)ev;
		__u64 *to = (__u64 *)((__u8 *)ev + sizeof(struct http_event) - HS_EVENT_SHORT_SIZE);
		to[5] = from[5];
		to[4] = from[4];
		to[3] = from[3];
		to[2] = from[2];
		to[1] = from[1];
		to[0] = from[0];
		failed = output(to, HS_EVENT_SHORT_SIZE, captured, ev->ts_ns, st);
	}
	/* Plain read-modify-write, not atomics: only two threads moving bytes of one socket in
	 * one direction at the same instant (an order user space cannot trust anyway) can
	 * miscount, by one event's bytes; the parser then frames as it did without the count. */
	if (failed) {
		/* This event's bytes are lost too (saturating): the next one carries them. */
		__u32 total = lost + (__u32)ret;
		state->lost[dir & 1] = total < lost ? 0xffffffff : total;
	} else if (lost) {
		/* Told; bytes lost by another CPU in the meantime stay counted (and two CPUs
		 * telling the same count cannot wrap it). */
		__u32 cur = state->lost[dir & 1];
		state->lost[dir & 1] = cur > lost ? cur - lost : 0;
	}
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(hs_sock_send, struct sock *sk, int ret, int flags)
{
	return on_data(sk, ret, flags, HS_DIR_SEND);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(hs_sock_recv, struct sock *sk, int ret, int flags)
{
	return on_data(sk, ret, flags, HS_DIR_RECV);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(hs_sock_state, const struct sock *sk, const int oldstate, const int newstate)
{
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	if (newstate == TCP_ESTABLISHED && (oldstate == TCP_SYN_SENT || oldstate == TCP_SYN_RECV)) {
		struct sock_state init = { .flags = SOCK_FRESH };
		struct sock_state *state =
			bpf_sk_storage_get(&HS_SOCKS, (void *)sk, &init, BPF_SK_STORAGE_GET_F_CREATE);
		/* A socket connected again after a close starts over (same cookie, though). */
		if (state)
			state->flags = SOCK_FRESH;
		return 0;
	}
	if (newstate != TCP_CLOSE)
		return 0;
	/* The state is kept (it is freed with the socket): the syscall that closed the socket
	 * may not have reached its sock_send_length yet. On loopback the peer's RST is processed
	 * inside the sender's own send (softirq on the way out), so TCP_CLOSE can come between
	 * the bytes going out and the tracepoint reporting them; deleting the state here made
	 * that last send (nginx's sendfile of the body, length only) look like a socket never
	 * seen, and it was dropped (the nginx e2e test's flake). */
	struct sock_state *state = bpf_sk_storage_get(&HS_SOCKS, (void *)sk, 0, 0);
	if (!state || !(state->flags & SOCK_HTTP))
		return 0;
	__u64 cookie = bpf_get_socket_cookie((void *)sk);

	/* On the stack, not in HS_SCRATCH: this may run in softirq context and interrupt a
	 * data program that is filling the per-CPU scratch. */
	struct http_event e = {};
	struct http_event *ev = &e;
	ev->ts_ns = bpf_ktime_get_ns();
	ev->cookie = cookie;
	ev->kind = HS_KIND_CLOSE;
	__u16 family = sk->__sk_common.skc_family;
	if (family == AF_INET || family == AF_INET6)
		fill_socket(ev, sk, family);
	output(ev, sizeof(struct http_event), 0, ev->ts_ns, stats());
	return 0;
}

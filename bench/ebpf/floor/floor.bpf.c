// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The floor of the eBPF source's overhead: programs on the same hooks as
 * crates/httpscope-capture/bpf/http.bpf.c (tp_btf/sock_send_length, tp_btf/sock_recv_length)
 * that do only the minimum of one design each, chosen at load time by CFG.mode:
 *
 *   0 empty    return at once: the cost of the tracepoint mechanism alone
 *   1 state    the per-event work every design needs: ret > 0, port, family/TCP, pid/tgid,
 *              the socket's local storage (created on its first HTTP-looking data, which
 *              means one register read and a 4-byte user read for a socket's first events);
 *              no ring write
 *   2 summary  state + the first 16 bytes of the user buffer (syscall registers, as
 *              http.bpf.c's current_args; first iovec segment; nothing for sendfile/splice)
 *              and, only when they start like a request or response head, one fixed 64-byte
 *              record in the CPU's ring: the minimum of a design that parses heads in the
 *              kernel and sends one record per message (Datadog USM style). A real one reads
 *              and parses more (method, path, status: ~100-160 bytes) and tracks bodies.
 *   3 copy     state + for every event of an HTTP socket, a 96-byte header + min(len, 512)
 *              payload bytes of the FIRST buffer segment, reserved in the CPU's ring at a
 *              constant size (96 + 512: bpf_ringbuf_reserve needs a constant) and read
 *              straight into it; sendfile/splice get a header only: the minimum of the
 *              design issue 5 prescribes (payload per event, parsed in user space). The real
 *              program copies every iovec segment (nginx's writev: one segment holds the
 *              head, so the same bytes here).
 *   4 copydyn  as copy, but reserving exactly 96 + min(len, 512) bytes with
 *              bpf_ringbuf_reserve_dynptr and reading the payload with the
 *              bpf_probe_read_user_dynptr kfunc (kernel >= 6.16)
 * Two parts of summary, to split its cost:
 *   5 read     state + the 16-byte read and the head check of summary, no ring write
 *   6 ring     state + one 64-byte record per event (no user read; syscall registers not
 *              read past the socket's first event), no head check
 *
 * One ring buffer per CPU (an array of maps, as http.bpf.c), no wakeups (the reader polls).
 * Failed reserves are counted per CPU (FL_STATS[0]); records written in FL_STATS[1].
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#include "httpscope.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define MODE_EMPTY 0
#define MODE_STATE 1
#define MODE_SUMMARY 2
#define MODE_COPY 3
#define MODE_COPYDYN 4
#define MODE_READ 5
#define MODE_RING 6

#define CAP 512
#define RING_BYTES (4 << 20) /* per CPU; the loader creates the rings with the same size */

struct cfg {
	__u32 mode;
	__u32 self_tgid;
	__u16 port; /* host order; 0: every port */
	__u16 _pad[3];
};
const volatile struct cfg CFG = {};

/* The summary record: 64 bytes. */
struct summary {
	__u64 ts_ns;
	__u64 cookie;
	__u32 tgid;
	__u32 tid;
	__u32 len;
	__u8 direction;
	__u8 syscall;
	__u16 lport;
	__u16 rport;
	__u16 _pad;
	__u32 _pad2;
	__u8 head[16];
	__u64 _pad3;
};
_Static_assert(sizeof(struct summary) == 64, "summary size");
_Static_assert(sizeof(struct http_event) == HS_EVENT_SIZE, "http_event size");

struct fl_ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RING_BYTES);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1); /* the loader sets it to the possible CPUs */
	__type(key, __u32);
	__array(values, struct fl_ring);
} FL_RINGS SEC(".maps");

struct sock_state {
	__u32 flags;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_state);
} FL_SOCKS SEC(".maps");

/* [0] failed reserves, [1] records written */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} FL_STATS SEC(".maps");

extern int bpf_probe_read_user_dynptr(struct bpf_dynptr *dptr, __u64 off, __u64 size,
				      const void *unsafe_ptr__ign) __ksym __weak;

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define MSG_PEEK 2

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

#define SOCK_HTTP 1

static __always_inline void count(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&FL_STATS, &i);
	if (v)
		*v += 1;
}

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

/*
 * The first buffer segment of the current syscall, from the user registers saved at entry
 * (as http.bpf.c's current_args): *base and *len, and the syscall (HS_SYS_*). Returns 0 with a
 * buffer, 1 for sendfile/splice (length only), -1 otherwise.
 */
static __always_inline int first_buffer(__u64 *base, __u64 *len, __u8 *sys)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!regs)
		return -1;
	long id = regs->orig_ax;
	__u64 ptr = regs->si, cnt = regs->dx;
	int kind; /* 0 buf, 1 iov, 2 msg */
	switch (id) {
	case NR_read: *sys = HS_SYS_READ; kind = 0; break;
	case NR_write: *sys = HS_SYS_WRITE; kind = 0; break;
	case NR_sendto: *sys = HS_SYS_SENDTO; kind = 0; break;
	case NR_recvfrom: *sys = HS_SYS_RECVFROM; kind = 0; break;
	case NR_readv: *sys = HS_SYS_READV; kind = 1; break;
	case NR_writev: *sys = HS_SYS_WRITEV; kind = 1; break;
	case NR_sendmsg: *sys = HS_SYS_SENDMSG; kind = 2; break;
	case NR_recvmsg: *sys = HS_SYS_RECVMSG; kind = 2; break;
	case NR_sendfile: *sys = HS_SYS_SENDFILE; return 1;
	case NR_splice: *sys = HS_SYS_SPLICE; return 1;
	default: *sys = HS_SYS_UNKNOWN; return -1;
	}
	if (kind == 0) {
		*base = ptr;
		*len = cnt;
		return 0;
	}
	if (kind == 2) {
		struct {
			const struct iovec *iov;
			__u64 len;
		} m;
		if (bpf_probe_read_user(&m, sizeof(m),
					(void *)(ptr + __builtin_offsetof(struct user_msghdr, msg_iov))))
			return -1;
		ptr = (__u64)m.iov;
		cnt = m.len;
	}
	if (cnt == 0)
		return -1;
	struct iovec seg;
	if (bpf_probe_read_user(&seg, sizeof(seg), (void *)ptr))
		return -1;
	*base = (__u64)seg.iov_base;
	*len = seg.iov_len;
	return 0;
}

static __always_inline void *ring(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	return bpf_map_lookup_elem(&FL_RINGS, &cpu);
}

/* One summary record (the `ring` and `summary` modes): `head` is the message's first 16
 * bytes, or NULL for none. Always returns 0 (the programs' return value). */
static __always_inline int summary_record(struct sock *sk, __u64 pid_tgid, int ret, __u8 dir,
					  __u8 sys, const __u8 *head)
{
	void *rb = ring();
	if (!rb)
		return 0;
	struct summary *r = bpf_ringbuf_reserve(rb, sizeof(*r), 0);
	if (!r) {
		count(0);
		return 0;
	}
	r->ts_ns = bpf_ktime_get_ns();
	r->cookie = bpf_get_socket_cookie(sk);
	r->tgid = pid_tgid >> 32;
	r->tid = (__u32)pid_tgid;
	r->len = ret;
	r->direction = dir;
	r->syscall = sys;
	r->lport = sk->__sk_common.skc_num;
	r->rport = bpf_ntohs(sk->__sk_common.skc_dport);
	r->_pad = 0;
	r->_pad2 = 0;
	if (head)
		__builtin_memcpy(r->head, head, 16);
	else
		__builtin_memset(r->head, 0, 16);
	r->_pad3 = 0;
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
	count(1);
	return 0;
}

static __always_inline void fill_header(struct http_event *ev, struct sock *sk, __u64 pid_tgid,
					int ret, __u8 dir, __u8 sys)
{
	ev->ts_ns = bpf_ktime_get_ns();
	ev->cookie = bpf_get_socket_cookie(sk);
	ev->tgid = pid_tgid >> 32;
	ev->tid = (__u32)pid_tgid;
	ev->len = ret;
	ev->family = 0;
	ev->lport = 0;
	ev->rport = 0;
	ev->kind = HS_KIND_DATA_SHORT;
	ev->direction = dir;
	ev->syscall = sys;
	ev->flags = 0;
	ev->_pad[0] = 0;
	ev->_pad[1] = 0;
	ev->lost = 0;
}

static __always_inline int on_data(struct sock *sk, int ret, int flags, __u8 dir)
{
	if (CFG.mode == MODE_EMPTY)
		return 0;
	if (ret <= 0)
		return 0;
	if (dir == HS_DIR_RECV && (flags & MSG_PEEK))
		return 0;
	if (CFG.port) {
		__u16 lport = sk->__sk_common.skc_num;
		__u16 rport = bpf_ntohs(sk->__sk_common.skc_dport);
		if (lport != CFG.port && rport != CFG.port)
			return 0;
	}
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if ((pid_tgid >> 32) == CFG.self_tgid)
		return 0;

	struct sock_state *state = bpf_sk_storage_get(&FL_SOCKS, sk, 0, 0);
	__u64 base = 0, blen = 0;
	__u8 sys = 0;
	int have = -1; /* first_buffer's result, when called */
	if (!state) {
		/* A socket not known yet: HTTP-looking data creates its state. */
		__u32 word = 0;
		have = first_buffer(&base, &blen, &sys);
		if (have != 0 || blen < 4 || ret < 4 || bpf_probe_read_user(&word, 4, (void *)base))
			return 0;
		if (!looks_http(word))
			return 0;
		struct sock_state init = { .flags = SOCK_HTTP };
		state = bpf_sk_storage_get(&FL_SOCKS, sk, &init, BPF_SK_STORAGE_GET_F_CREATE);
		if (!state)
			return 0;
	}
	if (!(state->flags & SOCK_HTTP))
		return 0;
	if (CFG.mode == MODE_STATE)
		return 0;

	if (CFG.mode == MODE_RING) {
		return summary_record(sk, pid_tgid, ret, dir, sys, NULL);
	}

	if (have == -1)
		have = first_buffer(&base, &blen, &sys);

	if (CFG.mode == MODE_SUMMARY || CFG.mode == MODE_READ) {
		if (have != 0 || blen < 4 || ret < 4)
			return 0;
		__u8 head[16] = {};
		__u64 n = blen < 16 ? blen : 16;
		if ((__u64)ret < n)
			n = ret;
		if (bpf_probe_read_user(head, n & 31, (void *)base))
			return 0;
		if (!looks_http(*(__u32 *)head))
			return 0;
		if (CFG.mode == MODE_READ) {
			/* keep the read and the check from being optimised away */
			count(1);
			return 0;
		}
		return summary_record(sk, pid_tgid, ret, dir, sys, head);
	}

	/* copy / copydyn: every event of an HTTP socket */
	__u64 n = 0;
	if (have == 0) {
		n = (__u64)ret < blen ? (__u64)ret : blen;
		if (n > CAP)
			n = CAP;
	}
	void *rb = ring();
	if (!rb)
		return 0;
	if (CFG.mode == MODE_COPY) {
		struct http_event *ev =
			bpf_ringbuf_reserve(rb, sizeof(struct http_event) + CAP, 0);
		if (!ev) {
			count(0);
			return 0;
		}
		fill_header(ev, sk, pid_tgid, ret, dir, sys);
		__u32 got = 0;
		barrier_var(n);
		if (n > CAP)
			n = CAP;
		if (n && !bpf_probe_read_user((__u8 *)(ev + 1), n, (void *)base))
			got = n;
		ev->captured = got;
		if (got < (__u32)ret)
			ev->flags |= HS_FLAG_TRUNCATED;
		if (have != 0)
			ev->flags |= HS_FLAG_NO_BUFFER;
		bpf_ringbuf_submit(ev, BPF_RB_NO_WAKEUP);
		count(1);
		return 0;
	}
	/* MODE_COPYDYN */
	struct bpf_dynptr dp;
	barrier_var(n);
	if (n > CAP)
		n = CAP;
	if (bpf_ringbuf_reserve_dynptr(rb, sizeof(struct http_event) + n, 0, &dp)) {
		bpf_ringbuf_discard_dynptr(&dp, 0);
		count(0);
		return 0;
	}
	struct http_event *ev = bpf_dynptr_data(&dp, 0, sizeof(struct http_event));
	if (!ev) {
		bpf_ringbuf_discard_dynptr(&dp, 0);
		return 0;
	}
	fill_header(ev, sk, pid_tgid, ret, dir, sys);
	__u32 got = 0;
	if (n && !bpf_probe_read_user_dynptr(&dp, sizeof(struct http_event), n, (void *)base))
		got = n;
	ev->captured = got;
	if (got < (__u32)ret)
		ev->flags |= HS_FLAG_TRUNCATED;
	if (have != 0)
		ev->flags |= HS_FLAG_NO_BUFFER;
	bpf_ringbuf_submit_dynptr(&dp, BPF_RB_NO_WAKEUP);
	count(1);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(hs_floor_send, struct sock *sk, int ret, int flags)
{
	return on_data(sk, ret, flags, HS_DIR_SEND);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(hs_floor_recv, struct sock *sk, int ret, int flags)
{
	return on_data(sk, ret, flags, HS_DIR_RECV);
}

/*
 * What loader.c, toggle.c and mech.c share about floor.bpf.o: its load-time config (the
 * rodata struct), the mode names, opening / configuring / loading one instance of it with
 * its per-CPU rings, the mmap ring reader, the FL_STATS sums and the clocks.
 *
 * The ring reader is not libbpf's ring_buffer__poll: its consumer stores the consumer
 * position after every record (the kernel reads it at every reserve, so each record costs a
 * cache-line transfer between the reader's CPU and the writer's; measured in session 3 of
 * BENCHMARKS.md), and with BPF_RB_NO_WAKEUP its epoll never fires, so it would need
 * ring_buffer__consume anyway. floor_drain follows the kernel's documented mmap layout
 * (consumer page RW; producer page then the data area mapped twice RO; 8-byte record headers
 * with busy/discard bits) and publishes the consumer position once per ring per drain.
 */
#ifndef FLOOR_H
#define FLOOR_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <linux/bpf.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>

#define RING_BYTES (4 << 20) /* as floor.bpf.c */
#define MAX_CPUS 64

/* floor.bpf.c's CFG, the only rodata variable (offset 0). */
struct cfg {
	__u32 mode;
	__u32 self_tgid;
	__u16 port; /* host order; 0: every port */
	__u16 _pad[3];
};

/* floor.bpf.c's CFG.mode values, in order. */
static const char *const floor_modes[] = { "empty", "state", "summary", "copy", "copydyn", "read", "ring" };
#define FLOOR_NMODES ((int)(sizeof(floor_modes) / sizeof(floor_modes[0])))

/* The mode's number, or -1 for an unknown name. */
static inline int floor_mode(const char *name)
{
	for (int i = 0; i < FLOOR_NMODES; i++)
		if (!strcmp(name, floor_modes[i]))
			return i;
	return -1;
}

/* One CPU's ring, mmapped. */
struct ring {
	unsigned long *consumer;
	const unsigned long *producer;
	const unsigned char *data;
	unsigned long pos;
};

/* What a drain counts; each tool reads the fields it wants. */
struct floor_counts {
	unsigned long long records; /* records read (not discarded) */
	unsigned long long bytes;   /* their lengths */
	unsigned long long payload; /* with_payload: copy headers' captured byte counts */
	int with_payload;
};

/* Reads the ring's new records up to the first busy one; stores the consumer position once. */
static inline void floor_drain(struct ring *r, struct floor_counts *c)
{
	unsigned long prod = __atomic_load_n(r->producer, __ATOMIC_ACQUIRE);
	unsigned long pos = r->pos;
	while (pos < prod) {
		const unsigned char *rec = r->data + (pos & (RING_BYTES - 1));
		__u32 len = __atomic_load_n((const __u32 *)rec, __ATOMIC_ACQUIRE);
		if (len & BPF_RINGBUF_BUSY_BIT)
			break;
		__u32 n = len & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
		if (!(len & BPF_RINGBUF_DISCARD_BIT)) {
			c->records++;
			c->bytes += n;
			if (c->with_payload && n >= 96)
				c->payload += *(const __u32 *)(rec + BPF_RINGBUF_HDR_SZ + 28); /* captured */
		}
		pos += (n + BPF_RINGBUF_HDR_SZ + 7) & ~7UL;
	}
	if (pos != r->pos) {
		r->pos = pos;
		__atomic_store_n(r->consumer, pos, __ATOMIC_RELEASE);
	}
}

/* One loaded instance of floor.bpf.o: its programs (not attached) and its rings. */
struct floor {
	struct bpf_object *obj;
	struct bpf_program *prog[2]; /* hs_floor_send, hs_floor_recv */
	int stats_fd;                /* FL_STATS */
	struct ring r[MAX_CPUS];
};

/*
 * Opens OBJ, writes CFG (mode, self_tgid, port), loads it and gives it ncpu rings of
 * RING_BYTES, mmapped for floor_drain. Says what failed on stderr and returns -1.
 */
static inline int floor_load(struct floor *f, const char *path, int mode, __u32 self_tgid,
			     __u16 port, int ncpu)
{
	f->obj = bpf_object__open_file(path, NULL);
	if (!f->obj || libbpf_get_error(f->obj)) {
		fprintf(stderr, "open %s failed\n", path);
		return -1;
	}
	struct bpf_map *rod = bpf_object__find_map_by_name(f->obj, ".rodata");
	struct bpf_map *rings = bpf_object__find_map_by_name(f->obj, "FL_RINGS");
	struct bpf_map *stats = bpf_object__find_map_by_name(f->obj, "FL_STATS");
	if (!rod || !rings || !stats) {
		fprintf(stderr, "maps not found\n");
		return -1;
	}
	size_t sz = 0;
	const void *init = bpf_map__initial_value(rod, &sz);
	if (!init || sz < sizeof(struct cfg)) {
		fprintf(stderr, "no rodata\n");
		return -1;
	}
	unsigned char *ro = malloc(sz);
	if (!ro)
		return -1;
	memcpy(ro, init, sz);
	struct cfg *c = (struct cfg *)ro; /* CFG is the only rodata variable: offset 0 */
	c->mode = mode;
	c->self_tgid = self_tgid;
	c->port = port;
	int err = bpf_map__set_initial_value(rod, ro, sz) || bpf_map__set_max_entries(rings, ncpu);
	free(ro); /* libbpf keeps its own copy */
	if (err) {
		fprintf(stderr, "setting rodata / ring count failed\n");
		return -1;
	}
	if (bpf_object__load(f->obj)) {
		fprintf(stderr, "load failed (mode %s)\n", floor_modes[mode]);
		return -1;
	}
	long page = sysconf(_SC_PAGESIZE);
	for (int i = 0; i < ncpu; i++) {
		int fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "fl_ring", 0, 0, RING_BYTES, NULL);
		if (fd < 0 || bpf_map_update_elem(bpf_map__fd(rings), &i, &fd, 0)) {
			fprintf(stderr, "ring %d: %s\n", i, strerror(errno));
			return -1;
		}
		void *cons = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		void *prod = mmap(NULL, page + 2 * (size_t)RING_BYTES, PROT_READ, MAP_SHARED, fd, page);
		if (cons == MAP_FAILED || prod == MAP_FAILED) {
			fprintf(stderr, "mmap ring %d: %s\n", i, strerror(errno));
			return -1;
		}
		f->r[i].consumer = cons;
		f->r[i].producer = prod;
		f->r[i].data = (const unsigned char *)prod + page;
		f->r[i].pos = 0;
	}
	f->stats_fd = bpf_map__fd(stats);
	f->prog[0] = bpf_object__find_program_by_name(f->obj, "hs_floor_send");
	f->prog[1] = bpf_object__find_program_by_name(f->obj, "hs_floor_recv");
	if (!f->prog[0] || !f->prog[1]) {
		fprintf(stderr, "programs not found\n");
		return -1;
	}
	return 0;
}

/* FL_STATS summed over the CPUs: out[0] failed reserves (lost), out[1] records written. */
static inline void floor_stats(const struct floor *f, int ncpu, unsigned long long out[2])
{
	__u64 v[MAX_CPUS];
	out[0] = out[1] = 0;
	for (__u32 k = 0; k < 2; k++) {
		if (bpf_map_lookup_elem(f->stats_fd, &k, v))
			continue;
		for (int i = 0; i < ncpu; i++)
			out[k] += v[i];
	}
}

/* This process's user+sys CPU seconds. */
static inline double floor_cpu_s(void)
{
	struct rusage u;
	getrusage(RUSAGE_SELF, &u);
	return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec +
	       u.ru_stime.tv_usec / 1e6;
}

/* CLOCK_MONOTONIC in ns (exact in a double for 104 days of uptime). */
static inline double floor_now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

#endif

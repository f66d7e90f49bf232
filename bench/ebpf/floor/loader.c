/*
 * Loads floor.bpf.o in one mode, attaches its two programs, and consumes the per-CPU rings
 * as cheaply as possible: every POLL_MS, walk each ring's new records counting them and
 * their bytes (copy modes: also the payload bytes the header says were captured, which
 * touches each record's header as any real reader must), and publish the consumer position
 * once per ring per drain. Prints "attached" on stderr when ready; on SIGINT/SIGTERM drains
 * once more and prints on stdout, in bench/ebpf/run.sh's key=value form:
 *   mode=M events=N bytes=N payload=N kernel_written=N kernel_lost=N cpu_s=S
 * events: records read; kernel_written / kernel_lost: the programs' per-CPU counts of
 * records submitted / reserves that failed; cpu_s: this process's user+sys CPU seconds
 * from attach to stop.
 *
 * Usage: loader OBJ MODE PORT      MODE: empty | state | summary | copy | copydyn | read | ring
 *
 * Not libbpf's ring_buffer__poll: its consumer stores the consumer position after every
 * record (the kernel reads it at every reserve, so each record costs a cache-line transfer
 * between the reader's CPU and the writer's; measured in session 3 of BENCHMARKS.md), and
 * with BPF_RB_NO_WAKEUP its epoll never fires, so it would need ring_buffer__consume anyway.
 * The reader here is the kernel's documented mmap layout (consumer page RW; producer page
 * then the data area mapped twice RO; 8-byte record headers with busy/discard bits).
 */
#include <errno.h>
#include <signal.h>
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
#define POLL_MS 10
#define MAX_CPUS 64

struct cfg {
	__u32 mode;
	__u32 self_tgid;
	__u16 port;
	__u16 _pad[3];
};

struct ring {
	unsigned long *consumer;
	const unsigned long *producer;
	const unsigned char *data;
	unsigned long pos;
};

static volatile sig_atomic_t stop;
static void on(int s) { (void)s; stop = 1; }

static unsigned long long events, bytes, payload;
static int copy_mode;

static void drain(struct ring *r)
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
			events++;
			bytes += n;
			if (copy_mode && n >= 96)
				payload += *(const __u32 *)(rec + BPF_RINGBUF_HDR_SZ + 28); /* captured */
		}
		pos += (n + BPF_RINGBUF_HDR_SZ + 7) & ~7UL;
	}
	if (pos != r->pos) {
		r->pos = pos;
		__atomic_store_n(r->consumer, pos, __ATOMIC_RELEASE);
	}
}

static double cpu_now(void)
{
	struct rusage u;
	getrusage(RUSAGE_SELF, &u);
	return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec +
	       u.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: loader OBJ empty|state|summary|copy|copydyn|read|ring PORT\n");
		return 2;
	}
	static const char *modes[] = { "empty", "state", "summary", "copy", "copydyn", "read", "ring" };
	int mode = -1;
	for (int i = 0; i < 7; i++)
		if (!strcmp(argv[2], modes[i]))
			mode = i;
	if (mode < 0) {
		fprintf(stderr, "unknown mode %s\n", argv[2]);
		return 2;
	}
	copy_mode = mode >= 3;
	int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0 || ncpu > MAX_CPUS) {
		fprintf(stderr, "possible cpus: %d\n", ncpu);
		return 1;
	}
	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
	if (!obj || libbpf_get_error(obj)) {
		fprintf(stderr, "open %s failed\n", argv[1]);
		return 1;
	}
	struct bpf_map *rod = bpf_object__find_map_by_name(obj, ".rodata");
	struct bpf_map *rings = bpf_object__find_map_by_name(obj, "FL_RINGS");
	struct bpf_map *stats = bpf_object__find_map_by_name(obj, "FL_STATS");
	if (!rod || !rings || !stats) {
		fprintf(stderr, "maps not found\n");
		return 1;
	}
	size_t sz = 0;
	const void *init = bpf_map__initial_value(rod, &sz);
	if (!init || sz < sizeof(struct cfg)) {
		fprintf(stderr, "no rodata\n");
		return 1;
	}
	unsigned char *ro = malloc(sz);
	memcpy(ro, init, sz);
	struct cfg *c = (struct cfg *)ro; /* CFG is the only rodata variable: offset 0 */
	c->mode = mode;
	c->self_tgid = getpid();
	c->port = atoi(argv[3]);
	if (bpf_map__set_initial_value(rod, ro, sz) || bpf_map__set_max_entries(rings, ncpu)) {
		fprintf(stderr, "setting rodata / ring count failed\n");
		return 1;
	}
	if (bpf_object__load(obj)) {
		fprintf(stderr, "load failed (mode %s)\n", modes[mode]);
		return 1;
	}
	long page = sysconf(_SC_PAGESIZE);
	struct ring r[MAX_CPUS];
	for (int i = 0; i < ncpu; i++) {
		int fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "fl_ring", 0, 0, RING_BYTES, NULL);
		if (fd < 0 || bpf_map_update_elem(bpf_map__fd(rings), &i, &fd, 0)) {
			fprintf(stderr, "ring %d: %s\n", i, strerror(errno));
			return 1;
		}
		void *cons = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		void *prod = mmap(NULL, page + 2 * (size_t)RING_BYTES, PROT_READ, MAP_SHARED, fd, page);
		if (cons == MAP_FAILED || prod == MAP_FAILED) {
			fprintf(stderr, "mmap ring %d: %s\n", i, strerror(errno));
			return 1;
		}
		r[i].consumer = cons;
		r[i].producer = prod;
		r[i].data = (const unsigned char *)prod + page;
		r[i].pos = 0;
	}
	struct bpf_program *p;
	bpf_object__for_each_program(p, obj) {
		struct bpf_link *l = bpf_program__attach(p);
		if (!l || libbpf_get_error(l)) {
			fprintf(stderr, "attach %s failed\n", bpf_program__name(p));
			return 1;
		}
	}
	signal(SIGINT, on);
	signal(SIGTERM, on);
	double c0 = cpu_now();
	fprintf(stderr, "attached: mode %s, port %s, %d rings of %d bytes\n", modes[mode], argv[3],
		ncpu, RING_BYTES);
	struct timespec ts = { 0, POLL_MS * 1000000L };
	while (!stop) {
		nanosleep(&ts, NULL);
		for (int i = 0; i < ncpu; i++)
			drain(&r[i]);
	}
	for (int i = 0; i < ncpu; i++)
		drain(&r[i]);
	double c1 = cpu_now();
	unsigned long long lost = 0, written = 0;
	__u64 v[MAX_CPUS];
	for (__u32 k = 0; k < 2; k++) {
		if (bpf_map_lookup_elem(bpf_map__fd(stats), &k, v))
			continue;
		for (int i = 0; i < ncpu; i++)
			*(k ? &written : &lost) += v[i];
	}
	printf("mode=%s events=%llu bytes=%llu payload=%llu kernel_written=%llu kernel_lost=%llu cpu_s=%.3f\n",
	       modes[mode], events, bytes, payload, written, lost, c1 - c0);
	fflush(stdout);
	return 0;
}

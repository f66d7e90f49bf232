/*
 * The floor modes against no programs at all, alternated every PHASE_MS inside ONE load run,
 * so that the host's drift (the unmonitored rate moves by +-20% between runs seconds apart
 * on this VM) mostly cancels between adjacent phases.
 *
 * Loads floor.bpf.o once per mode (each with its own rodata and per-CPU rings), then for
 * CYCLES cycles, the modes' order rotated by one each cycle: for every mode, a phase with no
 * programs attached ("off"), then a phase with that mode's two programs attached. Each phase
 * records, from the phase's start to its end:
 *   requests  growth of nginx's access log in bytes / LINE_BYTES (every line has the same
 *             length: "$request_method $uri $status $body_bytes_sent")
 *   app CPU   user+sys ticks of the APP_PIDS (nginx's worker, wrk) from /proc/PID/stat
 *   own CPU   this process's user+sys (draining the rings every 10 ms)
 *   records   records read from the mode's rings
 *   BPF ns    run_time_ns of the mode's programs (only with kernel.bpf_stats_enabled=1)
 * and prints one line per phase:
 *   phase CYCLE MODE SECONDS REQUESTS REQ_PER_S APP_US_PER_REQ OWN_US_PER_REQ RECORDS BPF_NS
 * Attaching and detaching happen between phases, outside the measured interval.
 *
 * Usage: toggle OBJ PORT ACCESS_LOG LINE_BYTES PHASE_MS CYCLES APP_PIDS MODE...
 *        APP_PIDS: comma-separated; MODE: empty | state | summary | copy | copydyn | read | ring
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
#include <sys/stat.h>
#include <linux/bpf.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>

#define RING_BYTES (4 << 20) /* as floor.bpf.c */
#define MAX_CPUS 64
#define MAX_MODES 8
#define MAX_PIDS 8

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

struct inst {
	const char *name;
	struct bpf_object *obj;
	struct bpf_program *prog[2];
	struct bpf_link *link[2];
	struct ring r[MAX_CPUS];
	unsigned long long records;
};

static int ncpu;
static const char *modes[] = { "empty", "state", "summary", "copy", "copydyn", "read", "ring" };

static void drain(struct inst *in)
{
	for (int i = 0; i < ncpu; i++) {
		struct ring *r = &in->r[i];
		unsigned long prod = __atomic_load_n(r->producer, __ATOMIC_ACQUIRE);
		unsigned long pos = r->pos;
		while (pos < prod) {
			const unsigned char *rec = r->data + (pos & (RING_BYTES - 1));
			__u32 len = __atomic_load_n((const __u32 *)rec, __ATOMIC_ACQUIRE);
			if (len & BPF_RINGBUF_BUSY_BIT)
				break;
			__u32 n = len & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
			if (!(len & BPF_RINGBUF_DISCARD_BIT))
				in->records++;
			pos += (n + BPF_RINGBUF_HDR_SZ + 7) & ~7UL;
		}
		if (pos != r->pos) {
			r->pos = pos;
			__atomic_store_n(r->consumer, pos, __ATOMIC_RELEASE);
		}
	}
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static double own_cpu(void)
{
	struct rusage u;
	getrusage(RUSAGE_SELF, &u);
	return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec +
	       u.ru_stime.tv_usec / 1e6;
}

static int pids[MAX_PIDS], npids;
static long tck;

static double app_cpu(void)
{
	double s = 0;
	for (int i = 0; i < npids; i++) {
		char p[64], buf[1024];
		snprintf(p, sizeof(p), "/proc/%d/stat", pids[i]);
		FILE *f = fopen(p, "r");
		if (!f)
			continue;
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = 0;
		char *q = strrchr(buf, ')');
		if (!q)
			continue;
		/* fields after the comm: state is field 3; utime 14, stime 15 */
		unsigned long ut = 0, st = 0;
		int field = 2;
		for (char *t = strtok(q + 1, " "); t; t = strtok(NULL, " ")) {
			field++;
			if (field == 14)
				ut = strtoul(t, NULL, 10);
			if (field == 15) {
				st = strtoul(t, NULL, 10);
				break;
			}
		}
		s += (double)(ut + st) / tck;
	}
	return s;
}

static long long log_size(const char *path)
{
	struct stat st;
	return stat(path, &st) ? -1 : (long long)st.st_size;
}

static unsigned long long bpf_ns(struct inst *in)
{
	unsigned long long t = 0;
	for (int k = 0; k < 2; k++) {
		struct bpf_prog_info info;
		__u32 len = sizeof(info);
		memset(&info, 0, sizeof(info));
		if (!bpf_obj_get_info_by_fd(bpf_program__fd(in->prog[k]), &info, &len))
			t += info.run_time_ns;
	}
	return t;
}

static volatile sig_atomic_t stop;
static void on(int s) { (void)s; stop = 1; }

/* One phase: the mode's programs attached (on_) or none; prints its line. */
static int phase(struct inst *in, int nin, struct inst *ins, int on_, int cyc, int phase_ms,
		 const char *logpath, int line)
{
	if (on_) {
		for (int p = 0; p < 2; p++) {
			in->link[p] = bpf_program__attach(in->prog[p]);
			if (!in->link[p] || libbpf_get_error(in->link[p])) {
				fprintf(stderr, "attach failed\n");
				return 1;
			}
		}
	}
	double t0 = now_s(), o0 = own_cpu(), a0 = app_cpu();
	long long s0 = log_size(logpath);
	unsigned long long r0 = in->records, b0 = bpf_ns(in);
	struct timespec ts = { 0, 10 * 1000000L };
	while (now_s() - t0 < phase_ms / 1e3 && !stop) {
		nanosleep(&ts, NULL);
		for (int j = 0; j < nin; j++)
			drain(&ins[j]);
	}
	double t1 = now_s(), o1 = own_cpu(), a1 = app_cpu();
	long long s1 = log_size(logpath);
	unsigned long long r1 = in->records, b1 = bpf_ns(in);
	double req = (double)(s1 - s0) / line;
	printf("phase %d %s %.3f %.0f %.1f %.3f %.4f %llu %llu\n", cyc, on_ ? in->name : "off",
	       t1 - t0, req, req / (t1 - t0), req > 0 ? (a1 - a0) * 1e6 / req : 0,
	       req > 0 ? (o1 - o0) * 1e6 / req : 0, on_ ? r1 - r0 : 0, on_ ? b1 - b0 : 0);
	fflush(stdout);
	if (on_) {
		for (int p = 0; p < 2; p++)
			bpf_link__destroy(in->link[p]);
		drain(in);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 9) {
		fprintf(stderr, "usage: toggle OBJ PORT ACCESS_LOG LINE_BYTES PHASE_MS CYCLES APP_PIDS MODE...\n");
		return 2;
	}
	const char *objpath = argv[1], *logpath = argv[3];
	int port = atoi(argv[2]), line = atoi(argv[4]), phase_ms = atoi(argv[5]), cycles = atoi(argv[6]);
	for (char *t = strtok(argv[7], ","); t && npids < MAX_PIDS; t = strtok(NULL, ","))
		pids[npids++] = atoi(t);
	tck = sysconf(_SC_CLK_TCK);
	ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0 || ncpu > MAX_CPUS || line <= 0)
		return 2;
	long page = sysconf(_SC_PAGESIZE);
	int nin = 0;
	static struct inst ins[MAX_MODES];
	for (int a = 8; a < argc && nin < MAX_MODES; a++) {
		int mode = -1;
		for (int i = 0; i < 7; i++)
			if (!strcmp(argv[a], modes[i]))
				mode = i;
		if (mode < 0) {
			fprintf(stderr, "unknown mode %s\n", argv[a]);
			return 2;
		}
		struct inst *in = &ins[nin++];
		in->name = modes[mode];
		in->obj = bpf_object__open_file(objpath, NULL);
		if (!in->obj || libbpf_get_error(in->obj))
			return 1;
		struct bpf_map *rod = bpf_object__find_map_by_name(in->obj, ".rodata");
		struct bpf_map *rings = bpf_object__find_map_by_name(in->obj, "FL_RINGS");
		size_t sz = 0;
		const void *init = rod ? bpf_map__initial_value(rod, &sz) : NULL;
		if (!rings || !init || sz < sizeof(struct cfg))
			return 1;
		unsigned char *ro = malloc(sz);
		memcpy(ro, init, sz);
		struct cfg *c = (struct cfg *)ro;
		c->mode = mode;
		c->self_tgid = getpid();
		c->port = port;
		if (bpf_map__set_initial_value(rod, ro, sz) || bpf_map__set_max_entries(rings, ncpu) ||
		    bpf_object__load(in->obj)) {
			fprintf(stderr, "load failed (mode %s)\n", in->name);
			return 1;
		}
		for (int i = 0; i < ncpu; i++) {
			int fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "fl_ring", 0, 0, RING_BYTES, NULL);
			if (fd < 0 || bpf_map_update_elem(bpf_map__fd(rings), &i, &fd, 0))
				return 1;
			void *cons = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			void *prod = mmap(NULL, page + 2 * (size_t)RING_BYTES, PROT_READ, MAP_SHARED, fd, page);
			if (cons == MAP_FAILED || prod == MAP_FAILED)
				return 1;
			in->r[i].consumer = cons;
			in->r[i].producer = prod;
			in->r[i].data = (const unsigned char *)prod + page;
		}
		in->prog[0] = bpf_object__find_program_by_name(in->obj, "hs_floor_send");
		in->prog[1] = bpf_object__find_program_by_name(in->obj, "hs_floor_recv");
		if (!in->prog[0] || !in->prog[1])
			return 1;
	}
	signal(SIGINT, on);
	signal(SIGTERM, on);
	fprintf(stderr, "attached: %d modes loaded, phases of %d ms\n", nin, phase_ms);
	for (int cyc = 0; cyc < cycles && !stop; cyc++)
		for (int k = 0; k < nin && !stop; k++) {
			if (phase(&ins[(k + cyc) % nin], nin, ins, 0, cyc + 1, phase_ms, logpath, line) ||
			    phase(&ins[(k + cyc) % nin], nin, ins, 1, cyc + 1, phase_ms, logpath, line))
				return 1;
		}
	/* a last off phase, so that every mode phase has one after it */
	if (!stop && phase(&ins[0], nin, ins, 0, cycles, phase_ms, logpath, line))
		return 1;
	return 0;
}

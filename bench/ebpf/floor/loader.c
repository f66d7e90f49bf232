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
 * The reader (floor.h's floor_drain) is not libbpf's ring_buffer__poll: see floor.h.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "floor.h"

#define POLL_MS 10

static volatile sig_atomic_t stop;
static void on(int s) { (void)s; stop = 1; }

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: loader OBJ empty|state|summary|copy|copydyn|read|ring PORT\n");
		return 2;
	}
	int mode = floor_mode(argv[2]);
	if (mode < 0) {
		fprintf(stderr, "unknown mode %s\n", argv[2]);
		return 2;
	}
	/* modes 3 and up: the header's captured count is read from records of >= 96 bytes */
	struct floor_counts n = { .with_payload = mode >= 3 };
	int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0 || ncpu > MAX_CPUS) {
		fprintf(stderr, "possible cpus: %d\n", ncpu);
		return 1;
	}
	static struct floor f;
	if (floor_load(&f, argv[1], mode, getpid(), atoi(argv[3]), ncpu))
		return 1;
	for (int p = 0; p < 2; p++) {
		struct bpf_link *l = bpf_program__attach(f.prog[p]);
		if (!l || libbpf_get_error(l)) {
			fprintf(stderr, "attach %s failed\n", bpf_program__name(f.prog[p]));
			return 1;
		}
	}
	signal(SIGINT, on);
	signal(SIGTERM, on);
	double c0 = floor_cpu_s();
	fprintf(stderr, "attached: mode %s, port %s, %d rings of %d bytes\n", floor_modes[mode],
		argv[3], ncpu, RING_BYTES);
	struct timespec ts = { 0, POLL_MS * 1000000L };
	while (!stop) {
		nanosleep(&ts, NULL);
		for (int i = 0; i < ncpu; i++)
			floor_drain(&f.r[i], &n);
	}
	for (int i = 0; i < ncpu; i++)
		floor_drain(&f.r[i], &n);
	double c1 = floor_cpu_s();
	unsigned long long st[2];
	floor_stats(&f, ncpu, st);
	printf("mode=%s events=%llu bytes=%llu payload=%llu kernel_written=%llu kernel_lost=%llu cpu_s=%.3f\n",
	       floor_modes[mode], n.records, n.bytes, n.payload, st[1], st[0], c1 - c0);
	fflush(stdout);
	return 0;
}

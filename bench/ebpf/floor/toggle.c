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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include "floor.h"

#define MAX_MODES 8
#define MAX_PIDS 8

struct inst {
	const char *name;
	struct floor f;
	struct bpf_link *link[2];
	struct floor_counts n; /* n.records: records read */
};

static int ncpu;

static void drain(struct inst *in)
{
	for (int i = 0; i < ncpu; i++)
		floor_drain(&in->f.r[i], &in->n);
}

static double now_s(void)
{
	return floor_now_ns() / 1e9;
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
		if (!bpf_obj_get_info_by_fd(bpf_program__fd(in->f.prog[k]), &info, &len))
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
			in->link[p] = bpf_program__attach(in->f.prog[p]);
			if (!in->link[p] || libbpf_get_error(in->link[p])) {
				fprintf(stderr, "attach failed\n");
				return 1;
			}
		}
	}
	double t0 = now_s(), o0 = floor_cpu_s(), a0 = app_cpu();
	long long s0 = log_size(logpath);
	unsigned long long r0 = in->n.records, b0 = bpf_ns(in);
	struct timespec ts = { 0, 10 * 1000000L };
	while (now_s() - t0 < phase_ms / 1e3 && !stop) {
		nanosleep(&ts, NULL);
		for (int j = 0; j < nin; j++)
			drain(&ins[j]);
	}
	double t1 = now_s(), o1 = floor_cpu_s(), a1 = app_cpu();
	long long s1 = log_size(logpath);
	unsigned long long r1 = in->n.records, b1 = bpf_ns(in);
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
	int nin = 0;
	static struct inst ins[MAX_MODES];
	for (int a = 8; a < argc && nin < MAX_MODES; a++) {
		int mode = floor_mode(argv[a]);
		if (mode < 0) {
			fprintf(stderr, "unknown mode %s\n", argv[a]);
			return 2;
		}
		struct inst *in = &ins[nin++];
		in->name = floor_modes[mode];
		if (floor_load(&in->f, objpath, mode, getpid(), port, ncpu))
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

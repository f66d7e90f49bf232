/*
 * The mechanism's cost per event, outside nginx and wrk: one thread sends 16 bytes ("GET "
 * first, so the state mode creates its socket state) over a TCP loopback connection and reads
 * them on the other end, both ways (4 events per iteration: 2 sends, 2 receives), in chunks
 * of ITERS iterations. Chunks alternate: no programs, then one mode's programs, for each mode
 * (loaded once, attached before and detached after their chunk, outside the timing).
 * Prints one line per chunk: "chunk CYCLE MODE NS_PER_ITERATION", then for each mode the
 * median and mean of (its chunk - the mean of the no-program chunks before and after) / 4,
 * in ns per event.
 *
 * The modes that write records get one 4 MiB ring per CPU; they are emptied between chunks,
 * outside the timing (keep ITERS x 4 x record size under 4 MiB: copy's records are 608 bytes).
 *
 * Usage: mech OBJ CYCLES ITERS MODE...     (MODE as loader.c)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "floor.h"

#define MAX_MODES 8
#define MAX_CHUNKS 20000

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: mech OBJ CYCLES ITERS MODE...\n");
		return 2;
	}
	int cycles = atoi(argv[2]), iters = atoi(argv[3]);
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	if (bind(l, (void *)&a, sizeof(a)) || listen(l, 1) || getsockname(l, (void *)&a, &al))
		return 1;
	int c = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(c, (void *)&a, sizeof(a)))
		return 1;
	int s = accept(l, NULL, NULL);
	setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	int port = ntohs(a.sin_port);

	int nin = 0;
	static struct floor fl[MAX_MODES];
	int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0 || ncpu > MAX_CPUS)
		return 1;
	const char *names[MAX_MODES];
	for (int i = 4; i < argc && nin < MAX_MODES; i++) {
		int mode = floor_mode(argv[i]);
		if (mode < 0)
			return 2;
		/* self_tgid 0: this process is the traffic */
		if (floor_load(&fl[nin], argv[1], mode, 0, port, ncpu))
			return 1;
		names[nin++] = floor_modes[mode];
	}
	char buf[16] = "GET / HTTP/1.1\r";
	static double t[MAX_CHUNKS];
	static int who[MAX_CHUNKS];
	int n = 0;
	for (int cyc = 0; cyc < cycles; cyc++)
		for (int k = 0; k <= 2 * nin && n < MAX_CHUNKS; k++) {
			/* off, m0, off, m1, ..., off (the last off also opens the next cycle) */
			if (k == 2 * nin && cyc != cycles - 1)
				break;
			int m = (k & 1) ? (k / 2 + cyc) % nin : -1;
			struct bpf_link *ln[2] = { 0, 0 };
			if (m >= 0)
				for (int p = 0; p < 2; p++)
					ln[p] = bpf_program__attach(fl[m].prog[p]);
			double t0 = floor_now_ns();
			for (int i = 0; i < iters; i++) {
				char r[16];
				if (send(c, buf, 16, 0) != 16 || recv(s, r, 16, MSG_WAITALL) != 16 ||
				    send(s, buf, 16, 0) != 16 || recv(c, r, 16, MSG_WAITALL) != 16)
					return 1;
			}
			t[n] = (floor_now_ns() - t0) / iters;
			who[n] = m;
			printf("chunk %d %s %.1f\n", cyc + 1, m >= 0 ? names[m] : "off", t[n]);
			n++;
			for (int p = 0; p < 2; p++)
				if (ln[p])
					bpf_link__destroy(ln[p]);
			if (m >= 0) /* empty the rings: every record is committed once detached */
				for (int k = 0; k < ncpu; k++)
					__atomic_store_n(fl[m].r[k].consumer,
							 __atomic_load_n(fl[m].r[k].producer, __ATOMIC_ACQUIRE),
							 __ATOMIC_RELEASE);
		}
	printf("\nns per event over no programs, (chunk - mean of the off chunks around it) / 4:\n");
	for (int m = 0; m < nin; m++) {
		static double d[MAX_CHUNKS];
		int nd = 0;
		double sum = 0;
		for (int i = 1; i + 1 < n; i++)
			if (who[i] == m && who[i - 1] < 0 && who[i + 1] < 0) {
				d[nd] = (t[i] - (t[i - 1] + t[i + 1]) / 2) / 4;
				sum += d[nd++];
			}
		qsort(d, nd, sizeof(double), cmp);
		unsigned long long tot[2];
		floor_stats(&fl[m], ncpu, tot);
		if (nd)
			printf("%-8s pairs %d median %.1f mean %.1f (q1 %.1f q3 %.1f) kernel_written %llu kernel_lost %llu\n",
			       names[m], nd, nd % 2 ? d[nd / 2] : (d[nd / 2 - 1] + d[nd / 2]) / 2, sum / nd,
			       d[nd / 4], d[3 * nd / 4], tot[1], tot[0]);
	}
	return 0;
}

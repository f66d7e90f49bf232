/* Attaches empty BPF programs to one function of a binary in one of several ways, prints
 * "attached", waits for a signal. Usage: loader OBJ BINARY FILE_OFFSET MODE
 * MODE: entry | ret | both | multi | multi_ret | multi_both | session_both | session_skip
 * libbpf 1.1 has no uprobe_multi API: those links are made with BPF_LINK_CREATE directly. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/bpf.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>

#define TRACE_UPROBE_MULTI 48
#define TRACE_UPROBE_SESSION 57
#define UPROBE_MULTI_RETURN 1

struct link_create_uprobe_multi {
	__u32 prog_fd, target_fd, attach_type, flags;
	__u64 path, offsets, ref_ctr_offsets, cookies;
	__u32 cnt, um_flags, pid;
	__u8 rest[256];
};

static int multi_link(int prog_fd, const char *path, unsigned long off, int type, int flags)
{
	struct link_create_uprobe_multi a;
	memset(&a, 0, sizeof(a));
	__u64 offs[1] = { off };
	a.prog_fd = prog_fd;
	a.attach_type = type;
	a.path = (__u64)(unsigned long)path;
	a.offsets = (__u64)(unsigned long)offs;
	a.cnt = 1;
	a.um_flags = flags;
	int fd = syscall(SYS_bpf, BPF_LINK_CREATE, &a, sizeof(a));
	if (fd < 0) {
		fprintf(stderr, "link_create: %s\n", strerror(errno));
		exit(1);
	}
	return fd;
}

static void on(int s) { (void)s; }

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage\n");
		return 2;
	}
	const char *path = argv[2], *mode = argv[4];
	unsigned long offs[8];
	int noffs = 0;
	for (char *p = argv[3]; *p && noffs < 8;) {
		offs[noffs++] = strtoul(p, &p, 0);
		if (*p == ',')
			p++;
		else
			break;
	}
	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) return 1;
	struct bpf_program *p;
	bpf_object__for_each_program(p, obj) {
		const char *n = bpf_program__name(p);
		if (!strncmp(n, "multi", 5))
			bpf_program__set_expected_attach_type(p, TRACE_UPROBE_MULTI);
		else if (!strncmp(n, "session", 7))
			bpf_program__set_expected_attach_type(p, TRACE_UPROBE_SESSION);
	}
	if (bpf_object__load(obj)) {
		fprintf(stderr, "load failed\n");
		return 1;
	}
#define PROG(n) bpf_program__fd(bpf_object__find_program_by_name(obj, n))
#define CHECK(l) do { if (!(l) || libbpf_get_error(l)) { fprintf(stderr, "attach failed\n"); return 1; } } while (0)
	for (int i = 0; i < noffs; i++) {
		unsigned long off = offs[i];
		if (!strcmp(mode, "entry") || !strcmp(mode, "both")) {
			struct bpf_link *l = bpf_program__attach_uprobe(bpf_object__find_program_by_name(obj, "entry"), false, -1, path, off);
			CHECK(l);
		}
		if (!strcmp(mode, "ret") || !strcmp(mode, "both")) {
			struct bpf_link *l = bpf_program__attach_uprobe(bpf_object__find_program_by_name(obj, "ret"), true, -1, path, off);
			CHECK(l);
		}
		if (!strcmp(mode, "multi") || !strcmp(mode, "multi_both"))
			multi_link(PROG("multi"), path, off, TRACE_UPROBE_MULTI, 0);
		if (!strcmp(mode, "multi_ret") || !strcmp(mode, "multi_both"))
			multi_link(PROG("multi_ret"), path, off, TRACE_UPROBE_MULTI, UPROBE_MULTI_RETURN);
		if (!strcmp(mode, "session_both"))
			multi_link(PROG("session_both"), path, off, TRACE_UPROBE_SESSION, 0);
		if (!strcmp(mode, "session_skip"))
			multi_link(PROG("session_skip"), path, off, TRACE_UPROBE_SESSION, 0);
	}
	signal(SIGINT, on);
	signal(SIGTERM, on);
	printf("attached\n");
	fflush(stdout);
	fprintf(stderr, "attached %d place(s), %s\n", noffs, mode);
	pause();
	printf("transactions=0 server=0 kernel_lost=0 cpu_s=0\n");
	return 0;
}

/* Empty programs: what is left is the cost of the probe mechanism itself. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
SEC("uprobe") int entry(void *ctx) { return 0; }
SEC("uprobe") int ret(void *ctx) { return 0; }
SEC("uprobe") int multi(void *ctx) { return 0; }
SEC("uprobe") int multi_ret(void *ctx) { return 0; }
/* Session: return 0 at entry runs the same program at return too, 1 skips the return. */
SEC("uprobe") int session_both(void *ctx) { return 0; }
SEC("uprobe") int session_skip(void *ctx) { return 1; }

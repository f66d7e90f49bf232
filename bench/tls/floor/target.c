/* Calls two tiny functions N times each and prints ns per call: f_push starts with an
 * instruction the kernel's uprobe code emulates (push %rbp), f_sub with one it must
 * single-step out of line (sub $0x18,%rsp), f_nop5 with a 5-byte nop (which kernels >= 6.18
 * turn into a call to a trampoline making a uprobe system call after the first hit); for scale, "sys" makes a getppid system call
 * per call instead. Usage: target N [push|sub|nop5|sys] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

static long f_sys(long x) { return syscall(SYS_getppid) + x; }

__asm__(".text\n"
	".globl f_push\n.type f_push,@function\nf_push:\n"
	"  push %rbp\n  mov %rdi,%rax\n  pop %rbp\n  ret\n.size f_push,.-f_push\n"
	".globl f_nop5\n.type f_nop5,@function\nf_nop5:\n"
	"  .byte 0x0f,0x1f,0x44,0x00,0x00\n  push %rbp\n  mov %rdi,%rax\n  pop %rbp\n  ret\n.size f_nop5,.-f_nop5\n"
	".globl f_sub\n.type f_sub,@function\nf_sub:\n"
	"  sub $0x18,%rsp\n  mov %rdi,%rax\n  add $0x18,%rsp\n  ret\n.size f_sub,.-f_sub\n");
long f_push(long);
long f_sub(long);
long f_nop5(long);

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	const char *which = argc > 2 ? argv[2] : "push";
	long (*f)(long) = !strcmp(which, "sub") ? f_sub : !strcmp(which, "sys") ? f_sys :
			       !strcmp(which, "nop5") ? f_nop5 : f_push;
	volatile long acc = 0;
	double t0 = now();
	for (long i = 0; i < n; i++)
		acc += f(i);
	double t1 = now();
	printf("%.1f\n", (t1 - t0) / n);
	return 0;
}

/*
 * wirecost: what one loopback TCP write costs on this machine, without
 * chatd. A writer pinned to core 0 sends SIZE bytes to each of N sockets in
 * turn, as a fan-out server does once per loop turn; a reader pinned to
 * core 1 drains them (non-blocking reads in a loop, no epoll). Prints the
 * writer's writes/s, microseconds of its core per write and MB/s. The
 * receiving side's TCP work runs on the writer's core (softirq), as it
 * does for chatd in bench/run.py.
 *
 *   build/bench/wirecost [CONNS [SECONDS [SIZE...]]]    (1000 2 300 3000 15000 60000)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double
now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double
cpu_s(void)
{
	struct rusage r;

	getrusage(RUSAGE_SELF, &r);
	return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
	    (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

static void
pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0)
		perror("wirecost: sched_setaffinity");
}

static void
nonblock(int fd)
{
	int on = 1;

	ioctl(fd, FIONBIO, &on);
}

static void
die(const char *what)
{
	perror(what);
	exit(1);
}

/* The reader: connect n sockets, then drain them until killed. */
static void
reader(const struct sockaddr_in *a, int n)
{
	int *fds = calloc((size_t)n, sizeof(*fds));
	char *buf = malloc(1 << 20);

	pin(1);
	for (int i = 0; i < n; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (fds[i] < 0 || connect(fds[i], (const struct sockaddr *)a, sizeof(*a)) != 0)
			die("wirecost: connect");
		nonblock(fds[i]);
	}
	for (;;)
		for (int i = 0; i < n; i++)
			if (read(fds[i], buf, 1 << 20) == 0)
				_exit(0);
}

static void
measure(const int *fds, int n, size_t size, double seconds)
{
	char *buf = malloc(size);
	long writes = 0, full = 0;
	double bytes = 0, t0, c0, el, cpu;

	memset(buf, 'x', size);
	t0 = now_s();
	c0 = cpu_s();
	while (now_s() - t0 < seconds) {
		for (int i = 0; i < n; i++) {
			ssize_t k = send(fds[i], buf, size, MSG_DONTWAIT | MSG_NOSIGNAL);

			if (k > 0) {
				writes++;
				bytes += (double)k;
			} else if (errno == EAGAIN) {
				full++;
			}
		}
	}
	el = now_s() - t0;
	cpu = cpu_s() - c0;
	printf("%6zu bytes/write: %8.0f writes/s, %5.2f us of the writer's core per write, "
	    "%6.0f MB/s, %ld writes refused (socket full)\n",
	    size, (double)writes / el, cpu * 1e6 / (double)writes, bytes / el / 1e6, full);
	free(buf);
}

int
main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1000;
	double seconds = argc > 2 ? atof(argv[2]) : 2;
	static const size_t sizes[] = { 300, 3000, 15000, 60000 };
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	int ls, one = 1, *fds;
	pid_t pid;

	if (n < 1 || n > 19000 || seconds <= 0) {
		fprintf(stderr, "usage: wirecost [CONNS (1..19000) [SECONDS [SIZE...]]]\n");
		return 2;
	}
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ls = socket(AF_INET, SOCK_STREAM, 0);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(ls, 4096) != 0 ||
	    getsockname(ls, (struct sockaddr *)&a, &alen) != 0)
		die("wirecost: listen");
	pid = fork();
	if (pid < 0)
		die("wirecost: fork");
	if (pid == 0)
		reader(&a, n);
	pin(0);
	fds = calloc((size_t)n, sizeof(*fds));
	for (int i = 0; i < n; i++) {
		fds[i] = accept(ls, NULL, NULL);
		if (fds[i] < 0)
			die("wirecost: accept");
		setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		nonblock(fds[i]);
	}
	printf("wirecost: %d loopback connections, writer on core 0, reader on core 1, %.1f s per size\n",
	    n, seconds);
	if (argc > 3)
		for (int i = 3; i < argc; i++)
			measure(fds, n, (size_t)atol(argv[i]), seconds);
	else
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
			measure(fds, n, sizes[i], seconds);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return 0;
}

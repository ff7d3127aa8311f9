/* fd: opens a file through WASI, which no contract may import. */
#include "../examples/matrixos.h"

__attribute__((import_module("wasi_snapshot_preview1"), import_name("path_open")))
int path_open(int fd, int flags, const char *path, int path_len, int oflags, long long rights, long long inherit, int fdflags, int *out);

MATRIXOS_EXPORT("handle") int handle(void) {
	int fd = 0;
	return path_open(3, 0, "/etc/passwd", 11, 0, 0, 0, 0, &fd);
}

/* bulk: fills a megabyte a hundred times; memory.fill pays for its
 * length, 1 gas per 64 bytes. */
#include "../examples/matrixos.h"

static char block[1 << 20];
static volatile int sink;

MATRIXOS_EXPORT("handle") int handle(void) {
	for (int i = 0; i < 100; i++) {
		__builtin_memset(block, i, sizeof block);
		sink = sink + block[i * 1000];
	}
	return 0;
}

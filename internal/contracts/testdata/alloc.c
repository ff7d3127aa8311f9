/* alloc: grows its memory a page at a time and writes to each new page
 * without checking memory.grow's answer; the memory limit must stop it. */
#include "../examples/matrixos.h"

MATRIXOS_EXPORT("handle") int handle(void) {
	for (;;) {
		long page = __builtin_wasm_memory_grow(0, 1);
		volatile char *p = (volatile char *)(page * 65536);
		p[0] = 1;
	}
	return 0;
}

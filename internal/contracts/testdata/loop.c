/* loop: runs forever; the gas limit must stop it. */
#include "../examples/matrixos.h"

MATRIXOS_EXPORT("handle") int handle(void) {
	volatile int x = 0;
	for (;;) x++;
	return 0;
}

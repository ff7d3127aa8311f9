/* bigresult: sets three result fields of 12 KiB each, more than a result
 * event may carry. */
#include "../examples/matrixos.h"

static char text[12 << 10];

MATRIXOS_EXPORT("handle") int handle(void) {
	for (int i = 0; i < (int)sizeof text; i++) {
		text[i] = '<';
	}
	result("a", text, sizeof text);
	result("b", text, sizeof text);
	result("c", text, sizeof text);
	return 0;
}

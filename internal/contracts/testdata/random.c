/* random: asks the host for a host function that does not exist. */
#include "../examples/matrixos.h"

__attribute__((import_module("matrixos"), import_name("random")))
long long host_random(void);

MATRIXOS_EXPORT("handle") int handle(void) {
	result_num("r", host_random());
	return 0;
}

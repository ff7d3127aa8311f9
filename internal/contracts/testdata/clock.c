/* clock: asks WASI for the time, which no contract may import. */
#include "../examples/matrixos.h"

__attribute__((import_module("wasi_snapshot_preview1"), import_name("clock_time_get")))
int clock_time_get(int id, long long precision, long long *out);

MATRIXOS_EXPORT("handle") int handle(void) {
	long long now = 0;
	clock_time_get(0, 1, &now);
	result_num("now", now);
	return 0;
}

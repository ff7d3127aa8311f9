/* recurse: calls itself without end; gas or the stack limit must stop it. */
#include "../examples/matrixos.h"

__attribute__((noinline)) static int down(volatile int n) { return down(n + 1) + 1; }

MATRIXOS_EXPORT("handle") int handle(void) { return down(0); }

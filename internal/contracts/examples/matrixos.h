/*
 * matrixos.h: the host functions a Matrix OS contract may import
 * (docs/contracts.md) and small helpers, for C compiled with
 *   clang --target=wasm32 -mbulk-memory -O2 -nostdlib -Wl,--no-entry -Wl,--export-dynamic
 * A contract exports int handle(void), called once per input event;
 * it returns 0 on success.
 */
#ifndef MATRIXOS_H
#define MATRIXOS_H

#define MATRIXOS_IMPORT(name) __attribute__((import_module("matrixos"), import_name(name)))
#define MATRIXOS_EXPORT(name) __attribute__((export_name(name)))

MATRIXOS_IMPORT("input_get") int input_get(const char *path, int path_len, char *out, int out_cap);
MATRIXOS_IMPORT("state_get") int state_get(const char *key, int key_len, char *out, int out_cap);
MATRIXOS_IMPORT("state_set") void state_set(const char *key, int key_len, const char *value, int value_len);
MATRIXOS_IMPORT("state_del") void state_del(const char *key, int key_len);
MATRIXOS_IMPORT("result_str") void result_str(const char *key, int key_len, const char *value, int value_len);
MATRIXOS_IMPORT("result_int") void result_int(const char *key, int key_len, long long value);

static __attribute__((unused)) int str_len(const char *s) {
	int n = 0;
	while (s[n]) n++;
	return n;
}

static __attribute__((unused)) int str_eq(const char *a, int a_len, const char *b) {
	int n = str_len(b);
	if (a_len != n) return 0;
	for (int i = 0; i < n; i++)
		if (a[i] != b[i]) return 0;
	return 1;
}

/* A buffer for building keys and values. */
typedef struct {
	char b[512];
	int n;
} buf;

static __attribute__((unused)) void buf_add(buf *k, const char *s, int n) {
	for (int i = 0; i < n && k->n < (int)sizeof k->b; i++) k->b[k->n++] = s[i];
}

static __attribute__((unused)) void buf_str(buf *k, const char *s) { buf_add(k, s, str_len(s)); }

/* input reads the input at path into out (NUL-terminated); it returns the
 * length, or -1 when the input has no such value or it does not fit. */
static __attribute__((unused)) int input(const char *path, char *out, int cap) {
	int n = input_get(path, str_len(path), out, cap - 1);
	if (n < 0 || n > cap - 1) return -1;
	out[n] = 0;
	return n;
}

static __attribute__((unused)) long long parse_int(const char *s, int n) {
	long long v = 0;
	int neg = n > 0 && s[0] == '-';
	for (int i = neg; i < n; i++) {
		if (s[i] < '0' || s[i] > '9') break;
		v = v * 10 + (s[i] - '0');
	}
	return neg ? -v : v;
}

/* get_int reads a number kept as decimal text in the state (0 if none). */
static __attribute__((unused)) long long get_int(buf *key) {
	char v[24];
	int n = state_get(key->b, key->n, v, sizeof v);
	if (n < 0 || n > (int)sizeof v) return 0;
	return parse_int(v, n);
}

static __attribute__((unused)) void set_int(buf *key, long long v) {
	char tmp[24], out[24];
	int n = 0, m = 0;
	unsigned long long u = v < 0 ? -(unsigned long long)v : (unsigned long long)v;
	do {
		tmp[n++] = '0' + u % 10;
		u /= 10;
	} while (u);
	if (v < 0) out[m++] = '-';
	while (n) out[m++] = tmp[--n];
	state_set(key->b, key->n, out, m);
}

static __attribute__((unused)) void result(const char *key, const char *value, int value_len) {
	result_str(key, str_len(key), value, value_len);
}

/* result_text sets a result field to a NUL-terminated string. */
static __attribute__((unused)) void result_text(const char *key, const char *value) {
	result_str(key, str_len(key), value, str_len(value));
}

static __attribute__((unused)) void result_num(const char *key, long long value) { result_int(key, str_len(key), value); }

#endif

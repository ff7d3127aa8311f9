/*
 * notary: registers a document's hash and proves later when it was
 * registered. Events (attach for both types):
 *   org.matrixos.notary.register  {"sha256": "<hex digest>"}
 *   org.matrixos.notary.check     {"sha256": "<hex digest>"}
 * A first registration records the registering event, its sender and its
 * origin_server_ts; the result of a registration or a check names them:
 *   {"sha256", "status": "registered" | "already_registered" | "unknown",
 *    "event_id", "registered_by", "registered_at"}
 * The result event and the registering event are in the room's ledger, so
 * its inclusion proofs show that the hash was registered by then.
 */
#include "matrixos.h"

static int is_hex_digest(const char *s, int n) {
	if (n != 64) return 0;
	for (int i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
	return 1;
}

static void field(buf *prefix, const char *digest, const char *name, char *out, int cap, const char *result_key) {
	buf k = {0};
	buf_add(&k, prefix->b, prefix->n);
	buf_add(&k, digest, 64);
	buf_str(&k, name);
	int n = state_get(k.b, k.n, out, cap);
	if (n >= 0 && n <= cap) result(result_key, out, n);
}

MATRIXOS_EXPORT("handle") int handle(void) {
	char type[64], digest[80], v[256];
	int tn = input("type", type, sizeof type);
	int dn = input("content.sha256", digest, sizeof digest);
	if (tn < 0) return 1;
	if (!is_hex_digest(digest, dn)) {
		result_text("error", "content.sha256 must be 64 lowercase hex digits");
		return 0;
	}
	result("sha256", digest, dn);
	buf doc = {0};
	buf_str(&doc, "doc:");
	buf_add(&doc, digest, dn);
	buf_str(&doc, ":event");
	int known = state_get(doc.b, doc.n, v, sizeof v) >= 0;
	buf prefix = {0};
	buf_str(&prefix, "doc:");
	if (str_eq(type, tn, "org.matrixos.notary.register") && !known) {
		static const char *fields[3][2] = {
			{"event_id", ":event"}, {"sender", ":by"}, {"origin_server_ts", ":at"}};
		for (int i = 0; i < 3; i++) {
			int n = input(fields[i][0], v, sizeof v);
			if (n < 0) return 2;
			buf k = {0};
			buf_add(&k, prefix.b, prefix.n);
			buf_add(&k, digest, dn);
			buf_str(&k, fields[i][1]);
			state_set(k.b, k.n, v, n);
		}
		result_text("status", "registered");
	} else if (known) {
		result_text("status", str_eq(type, tn, "org.matrixos.notary.register") ? "already_registered" : "registered");
	} else {
		result_text("status", "unknown");
		return 0;
	}
	field(&prefix, digest, ":event", v, sizeof v, "event_id");
	field(&prefix, digest, ":by", v, sizeof v, "registered_by");
	field(&prefix, digest, ":at", v, sizeof v, "registered_at");
	return 0;
}

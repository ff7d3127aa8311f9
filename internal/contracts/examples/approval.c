/*
 * approval: n of m approvers must approve an action before it is approved.
 * The attachment's config names the approvers and n:
 *   {"approvers": ["@a:example.org", "@b:example.org", ...], "required": 2}
 * Events (attach for both types):
 *   org.matrixos.approval.request  {"id": "<action id>", "action": "<text>"}
 *   org.matrixos.approval.approve  {"id": "<action id>"}
 * Results: {"id", "status": "pending" | "approved", "approvals", "required"},
 * or {"id", "error"} (unknown action, not an approver, approved twice).
 */
#include "matrixos.h"

static int is_approver(const char *user, int n) {
	char path[32], who[256];
	for (int i = 0; i < 64; i++) {
		buf p = {0};
		buf_str(&p, "config.approvers.");
		char d[4];
		int dn = 0;
		if (i >= 10) d[dn++] = '0' + i / 10;
		d[dn++] = '0' + i % 10;
		buf_add(&p, d, dn);
		for (int j = 0; j < p.n; j++) path[j] = p.b[j];
		path[p.n] = 0;
		int wn = input(path, who, sizeof who);
		if (wn < 0) return 0;
		if (wn == n && str_eq(who, wn, user)) return 1;
	}
	return 0;
}

MATRIXOS_EXPORT("handle") int handle(void) {
	char type[64], sender[256], aid[128], action[512], num[24];
	int tn = input("type", type, sizeof type);
	int sn = input("sender", sender, sizeof sender);
	int an = input("content.id", aid, sizeof aid);
	if (tn < 0 || sn < 0) return 1;
	if (an <= 0) {
		result_text("error", "content.id must be a non-empty string");
		return 0;
	}
	result("id", aid, an);
	int rn = input("config.required", num, sizeof num);
	long long required = rn > 0 ? parse_int(num, rn) : 1;
	result_num("required", required);
	buf status = {0};
	buf_str(&status, "status:");
	buf_add(&status, aid, an);
	char st[16];
	int stn = state_get(status.b, status.n, st, sizeof st);
	buf count = {0};
	buf_str(&count, "approvals:");
	buf_add(&count, aid, an);
	if (str_eq(type, tn, "org.matrixos.approval.request")) {
		if (stn >= 0) {
			result_text("error", "an action with this id was requested already");
			return 0;
		}
		int acn = input("content.action", action, sizeof action);
		if (acn > 0) result("action", action, acn);
		result("requested_by", sender, sn);
		state_set(status.b, status.n, "pending", 7);
		result_text("status", "pending");
		result_num("approvals", 0);
		return 0;
	}
	if (stn < 0) {
		result_text("error", "no such action");
		return 0;
	}
	if (!is_approver(sender, sn)) {
		result_text("error", "not an approver");
		return 0;
	}
	buf mine = {0};
	buf_str(&mine, "approved:");
	buf_add(&mine, aid, an);
	buf_str(&mine, ":");
	buf_add(&mine, sender, sn);
	char seen[2];
	if (state_get(mine.b, mine.n, seen, sizeof seen) >= 0) {
		result_text("error", "already approved");
		return 0;
	}
	state_set(mine.b, mine.n, "1", 1);
	long long approvals = get_int(&count) + 1;
	set_int(&count, approvals);
	result("approver", sender, sn);
	result_num("approvals", approvals);
	if (approvals >= required) {
		state_set(status.b, status.n, "approved", 8);
		result_text("status", "approved");
	} else {
		result("status", st, stn);
	}
	return 0;
}

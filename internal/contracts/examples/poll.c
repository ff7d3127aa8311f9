/*
 * poll: a poll with tallied votes. Attach it to a room for the event type
 * org.matrixos.poll.vote with content {"option": "<name>"}. Each member
 * votes once (a second vote changes their vote); the result after each
 * vote gives the option's tally and the number of voters:
 *   {"voter", "option", "votes": <option's votes>, "voters": <all voters>,
 *    "changed_from": <previous option, when the vote changed>}
 */
#include "matrixos.h"

MATRIXOS_EXPORT("handle") int handle(void) {
	char sender[256], option[128], prev[128];
	int sn = input("sender", sender, sizeof sender);
	int on = input("content.option", option, sizeof option);
	if (sn < 0) return 1;
	if (on <= 0) {
		result_text("error", "content.option must be a non-empty string");
		return 0;
	}
	buf vote = {0};
	buf_str(&vote, "vote:");
	buf_add(&vote, sender, sn);
	int pn = state_get(vote.b, vote.n, prev, sizeof prev);
	buf voters = {0};
	buf_str(&voters, "voters");
	if (pn > (int)sizeof prev) return 2;
	if (pn >= 0) {
		if (pn == on && str_eq(prev, pn, option)) {
			result_text("error", "already voted for this option");
			return 0;
		}
		buf old = {0};
		buf_str(&old, "tally:");
		buf_add(&old, prev, pn);
		set_int(&old, get_int(&old) - 1);
		result("changed_from", prev, pn);
	} else {
		set_int(&voters, get_int(&voters) + 1);
	}
	state_set(vote.b, vote.n, option, on);
	buf tally = {0};
	buf_str(&tally, "tally:");
	buf_add(&tally, option, on);
	long long votes = get_int(&tally) + 1;
	set_int(&tally, votes);
	result("voter", sender, sn);
	result("option", option, on);
	result_num("votes", votes);
	result_num("voters", get_int(&voters));
	return 0;
}

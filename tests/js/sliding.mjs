// Sliding sync scenario: matrix-js-sdk's SlidingSync class (simplified
// sliding sync, MSC4186) drives user A's client against a Matrix OS node: a
// room list of 200 rooms grown by ranges, a room subscription with lazy
// members, and the to_device, e2ee, account_data, typing and receipts
// extensions; A sees B's messages, invites, typing, receipts and to-device
// messages as they happen. Then A and B, each with the SDK's Rust crypto on
// sliding sync alone, hold an encrypted conversation.
//
// Usage: MATRIXOS_URL=http://127.0.0.1:8008 node sliding.mjs
//
// The output, exit status and debugging switch are common.mjs's.

import "./node20.mjs";
import * as sdk from "matrix-js-sdk";
import { SlidingSync, SlidingSyncEvent } from "matrix-js-sdk/lib/sliding-sync.js";

import { harness } from "./common.mjs";

const { baseUrl, out, run, password, step, waitFor, poll, account, newClient, runScenario } = harness("sliding", {
    globalTimeoutMs: 150_000,
    waitMs: 15_000,
    logLines: 60,
    deviceName: "matrix-js-sdk sliding sync",
});

const roomCount = 200;

// requiredState is what Element X's room list asks for.
const requiredState = [
    ["m.room.encryption", ""],
    ["m.room.member", "$LAZY"],
    ["m.room.member", "$ME"],
    ["m.room.name", ""],
    ["m.room.avatar", ""],
    ["m.room.canonical_alias", ""],
    ["m.room.topic", ""],
    ["m.room.join_rules", ""],
    ["m.room.power_levels", ""],
    ["m.room.create", ""],
    ["m.room.tombstone", ""],
    ["m.room.history_visibility", ""],
];

/** withRetry runs fn again after a 429 for as long as the server asks. */
async function withRetry(fn) {
    for (;;) {
        try {
            return await fn();
        } catch (err) {
            if (err.httpStatus !== 429) throw err;
            await new Promise((r) => setTimeout(r, err.data?.retry_after_ms ?? 1000));
        }
    }
}

async function main() {
    out(`sliding: homeserver ${baseUrl}, run ${run}`);

    const credsA = await step("register user A", () => account(`ssa-${run}`));
    const credsB = await step("register user B", () => account(`ssb-${run}`));
    const A = credsA.user_id;
    const B = credsB.user_id;
    const b = newClient(credsB);

    const rooms = await step(`B creates ${roomCount} rooms with A in them`, async () => {
        const ids = [];
        for (let i = 0; i < roomCount; i += 10) {
            const batch = [];
            for (let j = i; j < Math.min(i + 10, roomCount); j++) {
                batch.push(
                    withRetry(() => b.createRoom({ preset: "public_chat", name: `room ${j} ${run}` })).then((r) => r.room_id),
                );
            }
            ids.push(...(await Promise.all(batch)));
        }
        return ids;
    });
    const aHttp = newClient(credsA);
    await step("A joins them", async () => {
        for (let i = 0; i < rooms.length; i += 10) {
            await Promise.all(rooms.slice(i, i + 10).map((r) => withRetry(() => aHttp.joinRoom(r))));
        }
    });

    const a = newClient(credsA);
    await step("A: initRustCrypto (in-memory store)", () => a.initRustCrypto({ useIndexedDB: false }));
    const lists = new Map([["all_rooms", { ranges: [[0, 19]], timeline_limit: 1, required_state: requiredState }]]);
    const subscription = { timeline_limit: 20, required_state: [["*", "*"], ["m.room.member", "$LAZY"]] };
    const ss = new SlidingSync(baseUrl, lists, subscription, a, 10_000);
    let responses = 0;
    let lastErr;
    ss.on(SlidingSyncEvent.Lifecycle, (state, resp, err) => {
        if (resp) responses++;
        if (err) lastErr = err;
    });

    await step("A starts a client on sliding sync: the first 20 rooms", async () => {
        await a.startClient({ slidingSync: ss });
        await poll(
            () => a.getRooms().length >= 20 && ss.getListData("all_rooms")?.joinedCount === roomCount,
            () => `20 rooms and a list count of ${roomCount} (rooms ${a.getRooms().length}, ` +
                `count ${ss.getListData("all_rooms")?.joinedCount}, responses ${responses}, last error ${lastErr?.message ?? "none"})`,
        );
        return { note: `${a.getRooms().length} rooms after ${responses} responses` };
    });

    await step(`A grows the range to all ${roomCount} rooms`, async () => {
        ss.setListRanges("all_rooms", [[0, roomCount - 1]]);
        await poll(
            () => rooms.every((r) => a.getRoom(r)?.getMyMembership() === "join"),
            () => `all rooms joined in A's client (has ${a.getRooms().length})`,
        );
        const named = rooms.filter((r) => a.getRoom(r)?.name?.startsWith("room ")).length;
        if (named !== roomCount) throw new Error(`${named} rooms carry their name`);
    });

    const target = rooms[roomCount - 1];
    await step("B's message reaches A live", async () => {
        const body = `live ${run}`;
        const seen = waitFor(
            a,
            sdk.RoomEvent.Timeline,
            () => a.getRoom(target)?.getLiveTimeline().getEvents().some((e) => e.getContent().body === body),
            "B's message in A's timeline",
        );
        await b.sendTextMessage(target, body);
        await seen;
    });

    await step("A subscribes to a room: 20 events of history, B's member event", async () => {
        const room = rooms[0];
        for (let i = 0; i < 25; i++) await withRetry(() => b.sendTextMessage(room, `history ${i}`));
        ss.modifyRoomSubscriptions(new Set([room]));
        await poll(
            () => a.getRoom(room)?.getLiveTimeline().getEvents().filter((e) => e.getType() === "m.room.message").length >= 20,
            () => `20 messages in the subscribed room (has ${a.getRoom(room)?.getLiveTimeline().getEvents().length})`,
        );
        if (!a.getRoom(room).getMember(B)) throw new Error("B's member event did not come with the subscription");
    });

    await step("B's invite reaches A", async () => {
        const { room_id: invited } = await withRetry(() => b.createRoom({ preset: "private_chat", name: `invite ${run}`, invite: [A] }));
        await poll(() => a.getRoom(invited)?.getMyMembership() === "invite", "the invite in A's client");
    });

    await step("typing extension: A sees B typing", async () => {
        const seen = waitFor(
            a,
            sdk.RoomMemberEvent.Typing,
            () => a.getRoom(target)?.getMember(B)?.typing,
            "B typing in A's client",
        );
        await b.sendTyping(target, true, 20_000);
        await seen;
    });

    await step("receipts extension: A sees B's read receipt", async () => {
        const last = a.getRoom(target).getLiveTimeline().getEvents().at(-1);
        const path = `/rooms/${encodeURIComponent(target)}/receipt/m.read/${encodeURIComponent(last.getId())}`;
        await b.http.authedRequest(sdk.Method.Post, path, undefined, {});
        await poll(() => a.getRoom(target)?.getUsersReadUpTo(last)?.includes(B), "B's receipt on the last event");
    });

    await step("account_data extension: A's own account data comes back", async () => {
        await aHttp.setAccountData("org.example.sliding", { run });
        await poll(() => a.getAccountData("org.example.sliding")?.getContent().run === run, "the account data in A's client");
    });

    await step("to_device extension: B's to-device message reaches A", async () => {
        const seen = waitFor(
            a,
            sdk.ClientEvent.ToDeviceEvent,
            () => true,
            "a to-device event",
        );
        await b.sendToDevice("org.example.ping", new Map([[A, new Map([[credsA.device_id, { run }]])]]));
        await seen;
    });

    // B's second device: Rust crypto on sliding sync too.
    const credsB2 = await step("B logs in a device with crypto", () =>
        b.loginRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: B }, password }),
    );
    const b2 = newClient(credsB2);
    await step("B2: initRustCrypto and sliding sync", async () => {
        await b2.initRustCrypto({ useIndexedDB: false });
        const ss2 = new SlidingSync(
            baseUrl,
            new Map([["all_rooms", { ranges: [[0, 9]], timeline_limit: 10, required_state: requiredState, filters: { is_encrypted: true } }]]),
            subscription,
            b2,
            10_000,
        );
        await b2.startClient({ slidingSync: ss2 });
    });

    const secretRoom = await step("A creates an encrypted room with B", async () => {
        const res = await a.createRoom({
            preset: "private_chat",
            name: `secret ${run}`,
            invite: [B],
            initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
        });
        await withRetry(() => b.joinRoom(res.room_id));
        await poll(() => a.getRoom(res.room_id)?.getMember(B)?.membership === "join", "B joined in A's client");
        await poll(() => b2.getRoom(res.room_id)?.getMyMembership() === "join", "the room in B2's client");
        return res.room_id;
    });

    /** decrypted lists the decrypted bodies of sender's messages in client's room. */
    const decrypted = (client, sender) =>
        (client.getRoom(secretRoom)?.getLiveTimeline().getEvents() ?? [])
            .filter((e) => e.getSender() === sender && e.isEncrypted() && e.getType() === "m.room.message")
            .map((e) => e.getClearContent()?.body);

    await step("A's encrypted message is decrypted by B2", async () => {
        await a.sendTextMessage(secretRoom, `secret from A ${run}`);
        await poll(() => decrypted(b2, A).includes(`secret from A ${run}`), () => `A's message decrypted by B2 (has ${JSON.stringify(decrypted(b2, A))})`);
    });

    await step("B2's encrypted reply is decrypted by A", async () => {
        await b2.sendTextMessage(secretRoom, `secret from B ${run}`);
        await poll(() => decrypted(a, B).includes(`secret from B ${run}`), () => `B2's reply decrypted by A (has ${JSON.stringify(decrypted(a, B))})`);
    });
}

runScenario(main);

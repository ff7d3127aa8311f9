// End-to-end scenario: two matrix-js-sdk clients talk to a Matrix OS node.
//
// Usage: MATRIXOS_URL=http://127.0.0.1:8008 node scenario.mjs
//
// The output, exit status and debugging switch are common.mjs's.

import "./node20.mjs";
import * as sdk from "matrix-js-sdk";

import { harness } from "./common.mjs";

const { baseUrl, out, run, step, waitFor, account, newClient, start, runScenario } = harness("scenario", {
    globalTimeoutMs: 60_000,
    waitMs: 10_000,
    logLines: 60,
    deviceName: "matrix-js-sdk scenario",
});

/** bodies lists the bodies of sender's m.room.message events in room's live timeline. */
function bodies(room, sender) {
    if (!room) return [];
    return room
        .getLiveTimeline()
        .getEvents()
        .filter((e) => e.getType() === "m.room.message" && (!sender || e.getSender() === sender))
        .map((e) => e.getContent().body);
}

/** sameOrder reports whether got equals want. */
const sameOrder = (got, want) => got.length === want.length && got.every((b, i) => b === want[i]);

/**
 * recordLive records, per room, the bodies of other users' messages in the
 * order the client's sync delivered them as live Room.timeline events.
 */
function recordLive(client) {
    const seen = new Map();
    client.on(sdk.RoomEvent.Timeline, (ev, room, toStart, _removed, data) => {
        if (toStart || !data?.liveEvent || !room) return;
        if (ev.getType() !== "m.room.message" || ev.getSender() === client.getUserId()) return;
        if (!seen.has(room.roomId)) seen.set(room.roomId, []);
        seen.get(room.roomId).push(ev.getContent().body);
    });
    return (roomId) => seen.get(roomId) ?? [];
}

async function main() {
    out(`scenario: homeserver ${baseUrl}, run ${run}`);

    const credsA = await step("register user A (m.login.dummy)", () => account(`jsa-${run}`));
    const credsB = await step("register user B (m.login.dummy)", () => account(`jsb-${run}`));
    const a = newClient(credsA);
    const b = newClient(credsB);
    const A = credsA.user_id;
    const B = credsB.user_id;
    const liveA = recordLive(a);
    const liveB = recordLive(b);

    await step("A starts syncing (versions, pushrules, filter, initial /sync)", () => start(a));
    await step("B starts syncing", () => start(b));

    const roomId = await step("A creates a room", async () => {
        const res = await a.createRoom({ preset: "private_chat", name: `js scenario ${run}` });
        if (!res.room_id) throw new Error(`createRoom answered without room_id: ${JSON.stringify(res)}`);
        return res.room_id;
    });

    await step(
        "A sees the new room via sync",
        () =>
            waitFor(
                a,
                sdk.ClientEvent.Room,
                () => a.getRoom(roomId)?.getMyMembership() === "join",
                `room ${roomId} with A joined in A's sync`,
            ),
        { soft: true },
    );

    await step("A invites B", () => a.invite(roomId, B));

    await step(
        "B sees the invite via sync",
        () =>
            waitFor(
                b,
                // A brand-new room is stored (ClientEvent.Room) only after
                // its membership event has been processed.
                [sdk.RoomEvent.MyMembership, sdk.ClientEvent.Room],
                () => b.getRoom(roomId)?.getMyMembership() === "invite",
                `invite to ${roomId} in B's sync (rooms.invite)`,
            ),
        { soft: true },
    );

    await step("B joins the room", () => b.joinRoom(roomId));

    await step(
        "A sees B's join via sync",
        () =>
            waitFor(
                a,
                sdk.RoomMemberEvent.Membership,
                () => a.getRoom(roomId)?.getMember(B)?.membership === "join",
                `B's m.room.member join in A's sync`,
            ),
        { soft: true },
    );

    const fromA = ["A1: hello B", "A2: how are you?", "A3: third message"];
    const fromB = ["B1: hi A", "B2: fine, thanks"];
    const ids = {};

    await step("A sends 3 messages", async () => {
        for (const body of fromA) ids[body] = (await a.sendTextMessage(roomId, body)).event_id;
    });

    await step(
        "B sees A's 3 messages live via sync, in order",
        () =>
            waitFor(
                b,
                sdk.RoomEvent.Timeline,
                () => {
                    const got = liveB(roomId);
                    if (got.length > fromA.length) throw new Error(`unexpected messages: ${JSON.stringify(got)}`);
                    if (got.length === fromA.length && !sameOrder(got, fromA))
                        throw new Error(`wrong order: ${JSON.stringify(got)}`);
                    return got.length === fromA.length;
                },
                () => `A's messages in B's timeline (so far: ${JSON.stringify(liveB(roomId))})`,
            ),
        { soft: true },
    );

    await step("B sends 2 messages", async () => {
        for (const body of fromB) ids[body] = (await b.sendTextMessage(roomId, body)).event_id;
    });

    await step(
        "A sees B's 2 messages live via sync, in order",
        () =>
            waitFor(
                a,
                sdk.RoomEvent.Timeline,
                () => {
                    const got = liveA(roomId);
                    if (got.length > fromB.length) throw new Error(`unexpected messages: ${JSON.stringify(got)}`);
                    if (got.length === fromB.length && !sameOrder(got, fromB))
                        throw new Error(`wrong order: ${JSON.stringify(got)}`);
                    return got.length === fromB.length;
                },
                () => `B's messages in A's timeline (so far: ${JSON.stringify(liveA(roomId))})`,
            ),
        { soft: true },
    );

    await step(
        "A's timeline has all 5 messages in order",
        async () => {
            const got = bodies(a.getRoom(roomId));
            if (!sameOrder(got, [...fromA, ...fromB])) throw new Error(`A's timeline: ${JSON.stringify(got)}`);
        },
        { soft: true },
    );

    // A second client for B starts from a small initial sync (timeline limit
    // 2) and paginates back with /messages until it has the whole conversation.
    const all = [...fromA, ...fromB];
    const b2 = newClient(credsB);
    const b2Started = await step(
        "B's second client: initial sync with timeline limit 2",
        async () => {
            await start(b2, { initialSyncLimit: 2 });
            const room = b2.getRoom(roomId);
            if (!room) throw new Error(`room ${roomId} missing from initial sync`);
            const n = room.getLiveTimeline().getEvents().length;
            const got = bodies(room);
            if (n > 2) throw new Error(`initial timeline has ${n} events (limit 2): ${JSON.stringify(got)}`);
            if (!sameOrder(got, fromB.slice(-n))) throw new Error(`initial timeline: ${JSON.stringify(got)}`);
            if (!room.oldState.paginationToken) throw new Error("no prev_batch in the limited initial timeline");
            return true;
        },
        { soft: true },
    );
    if (b2Started) {
        await step(
            "B paginates back (scrollback, /messages dir=b) and sees earlier messages in order",
            async () => {
                const room = b2.getRoom(roomId);
                for (let i = 0; i < 10 && bodies(room).length < all.length; i++) {
                    if (room.oldState.paginationToken === null)
                        throw new Error(`reached the start of the room with only ${JSON.stringify(bodies(room))}`);
                    await b2.scrollback(room, 3);
                }
                const got = bodies(room);
                if (!sameOrder(got, all)) throw new Error(`timeline after scrollback: ${JSON.stringify(got)}`);
                const head0 = () => room.getLiveTimeline().getEvents()[0];
                for (let i = 0; i < 10 && head0()?.getType() !== "m.room.create"; i++) {
                    if (room.oldState.paginationToken === null) break;
                    await b2.scrollback(room, 10);
                }
                const head = head0();
                if (head?.getType() !== "m.room.create")
                    throw new Error(`paginated to the start but the first event is ${head?.getType()}, not m.room.create`);
            },
            { soft: true },
        );
    }
    b2.stopClient();

    await step(
        "A sends typing; B sees RoomMember.typing for A",
        async () => {
            const seen = waitFor(
                b,
                sdk.RoomMemberEvent.Typing,
                () => b.getRoom(roomId)?.getMember(A)?.typing === true,
                "A typing in B's sync (m.typing ephemeral event)",
            );
            await a.sendTyping(roomId, true, 15000);
            await seen;
        },
        { soft: true },
    );

    await step(
        "A stops typing; B sees it stop",
        async () => {
            const seen = waitFor(
                b,
                sdk.RoomMemberEvent.Typing,
                () => b.getRoom(roomId)?.getMember(A)?.typing === false,
                "A no longer typing in B's sync",
            );
            await a.sendTyping(roomId, false, 0);
            await seen;
        },
        { soft: true },
    );

    await step(
        "B sends a read receipt for A3; A sees it (Room.receipt)",
        async () => {
            const evId = ids[fromA[2]];
            const ev = b.getRoom(roomId)?.findEventById(evId);
            if (!ev) throw new Error(`B's client does not hold event ${evId}`);
            const seen = waitFor(
                a,
                sdk.RoomEvent.Receipt,
                () => a.getRoom(roomId)?.getReadReceiptForUserId(B, true)?.eventId === evId,
                `B's m.read receipt on ${evId} in A's sync (m.receipt ephemeral event)`,
            );
            await b.sendReadReceipt(ev);
            await seen;
        },
        { soft: true },
    );

}

runScenario(main);

// End-to-end scenario: two matrix-js-sdk clients talk to a Matrix OS node.
//
// Usage: MATRIXOS_URL=http://127.0.0.1:8008 node scenario.mjs
//
// Prints one line per step ("ok   <step>" or "FAIL <step>: <why>") and exits
// 0 when every step passed, 1 otherwise. Steps after a failed required step
// are not run; a failed "soft" step (something seen through sync) is
// reported and the scenario goes on, so one run shows everything that is
// missing. Set MATRIXOS_JS_DEBUG=1 to see the SDK's own log.

import * as sdk from "matrix-js-sdk";

const GLOBAL_TIMEOUT_MS = 60_000;
const WAIT_MS = 10_000;

const baseUrl = process.env.MATRIXOS_URL;
if (!baseUrl) {
    console.error("scenario: MATRIXOS_URL is not set");
    process.exit(2);
}

// The SDK logs a lot through console.*. Keep its warnings and errors and
// show them only when something fails.
const debug = !!process.env.MATRIXOS_JS_DEBUG;
const out = (line) => process.stdout.write(line + "\n");
const sdkLog = [];
if (!debug) {
    const keep =
        (level) =>
        (...args) => {
            // Noise for every brand-new room; not a server problem.
            if (args.map(String).join(" ").includes("Got room state event for unknown room")) return;
            sdkLog.push(`[sdk ${level}] ${args.map(fmtArg).join(" ")}`);
            if (sdkLog.length > 60) sdkLog.shift();
        };
    console.log = console.debug = console.info = console.trace = () => {};
    console.warn = keep("warn");
    console.error = keep("error");
}

function fmtArg(a) {
    if (a instanceof Error) return describe(a);
    if (typeof a === "object" && a !== null) {
        try {
            return JSON.stringify(a).slice(0, 500);
        } catch {
            return String(a);
        }
    }
    return String(a);
}

/** describe renders an error, with the HTTP details of a MatrixError. */
function describe(err) {
    if (err && err.httpStatus !== undefined) {
        const data = err.data ? JSON.stringify(err.data) : "";
        return `HTTP ${err.httpStatus} ${err.errcode ?? ""} ${data} (${err.url ?? "?"})`.replace(/\s+/g, " ");
    }
    return err && err.message ? err.message : String(err);
}

const failures = [];

function finish() {
    const passed = results.filter((r) => r.ok).length;
    out(`scenario done: ${passed} steps ok, ${results.length - passed} failed`);
    if (failures.length > 0 && sdkLog.length > 0) {
        out("--- last SDK warnings/errors ---");
        for (const l of sdkLog) out(l);
    }
    for (const c of clients) {
        try {
            c.stopClient();
        } catch {
            // shutting down anyway
        }
    }
    process.exit(failures.length === 0 ? 0 : 1);
}

const timer = setTimeout(() => {
    out(`FAIL global timeout: scenario did not finish in ${GLOBAL_TIMEOUT_MS / 1000}s`);
    failures.push("global timeout");
    finish();
}, GLOBAL_TIMEOUT_MS);

const results = [];

/**
 * step runs fn as one named step. A failed step ends the scenario unless
 * soft is set. It returns fn's value, or undefined after a soft failure.
 */
async function step(name, fn, { soft = false } = {}) {
    const start = Date.now();
    try {
        const v = await fn();
        results.push({ name, ok: true });
        out(`ok   ${name} (${Date.now() - start} ms)`);
        return v;
    } catch (err) {
        results.push({ name, ok: false });
        failures.push(name);
        out(`FAIL ${name}: ${describe(err)}`);
        if (!soft) {
            out("scenario stopped: the remaining steps depend on this one");
            finish();
        }
        return undefined;
    }
}

/**
 * waitFor resolves once check() returns a truthy value, testing it now and
 * after every event (a name or a list of names) emitted by emitter; it
 * rejects after ms with what (a string or a function giving one).
 */
function waitFor(emitter, event, check, what, ms = WAIT_MS) {
    const events = Array.isArray(event) ? event : [event];
    return new Promise((resolve, reject) => {
        let done = false;
        const test = () => {
            if (done) return;
            let v;
            try {
                v = check();
            } catch (err) {
                v = undefined;
                cleanup();
                reject(err);
                return;
            }
            if (v) {
                cleanup();
                resolve(v);
            }
        };
        const t = setTimeout(() => {
            cleanup();
            reject(new Error(`timed out after ${ms} ms waiting for ${typeof what === "function" ? what() : what}`));
        }, ms);
        const cleanup = () => {
            done = true;
            clearTimeout(t);
            for (const e of events) emitter.off(e, test);
        };
        for (const e of events) emitter.on(e, test);
        test();
    });
}

const clients = [];
const run = Math.random().toString(36).slice(2, 8);
const password = `pw-${run}-secret`;

/** account registers localpart (m.login.dummy), or logs in if it exists. */
async function account(localpart) {
    const anon = sdk.createClient({ baseUrl });
    const body = {
        username: localpart,
        password,
        initial_device_display_name: "matrix-js-sdk scenario",
        auth: { type: "m.login.dummy" },
    };
    try {
        return await anon.registerRequest(body);
    } catch (err) {
        if (err.httpStatus === 401 && err.data?.session) {
            // The server wants a user-interactive auth session first.
            body.auth.session = err.data.session;
            return await anon.registerRequest(body);
        }
        if (err.errcode === "M_USER_IN_USE") {
            return await anon.loginRequest({
                type: "m.login.password",
                identifier: { type: "m.id.user", user: localpart },
                password,
            });
        }
        throw err;
    }
}

function newClient(creds) {
    const c = sdk.createClient({
        baseUrl,
        accessToken: creds.access_token,
        userId: creds.user_id,
        deviceId: creds.device_id,
        timelineSupport: true,
    });
    clients.push(c);
    return c;
}

/** start starts the sync loop and waits for the first sync to be processed. */
async function start(client, opts = {}) {
    let lastErr;
    const onSync = (state, _prev, data) => {
        if (state === "ERROR") lastErr = data?.error;
    };
    client.on(sdk.ClientEvent.Sync, onSync);
    await client.startClient({ initialSyncLimit: 20, ...opts });
    try {
        await waitFor(
            client,
            sdk.ClientEvent.Sync,
            () => ["PREPARED", "SYNCING"].includes(client.getSyncState()),
            "first sync (state PREPARED)",
        );
    } catch (err) {
        if (lastErr) throw new Error(`${err.message}; last sync error: ${describe(lastErr)}`);
        throw err;
    } finally {
        client.off(sdk.ClientEvent.Sync, onSync);
    }
}

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

    clearTimeout(timer);
    finish();
}

main().catch((err) => {
    out(`FAIL unexpected error: ${describe(err)}`);
    if (err?.stack) out(err.stack);
    failures.push("unexpected");
    finish();
});

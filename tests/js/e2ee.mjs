// End-to-end encryption scenario: two matrix-js-sdk clients, each with the
// SDK's Rust crypto (@matrix-org/matrix-sdk-crypto-wasm), talk in an
// encrypted room on a Matrix OS node.
//
// Usage: MATRIXOS_URL=http://127.0.0.1:8008 node e2ee.mjs
//
// The output, exit status and debugging switch are common.mjs's.

import "./node20.mjs";
import * as sdk from "matrix-js-sdk";

import { harness } from "./common.mjs";

const { baseUrl, out, run, password, step, waitFor, poll, account, newClient: baseClient, start, runScenario } = harness("e2ee", {
    globalTimeoutMs: 90_000,
    waitMs: 20_000,
    logLines: 80,
    deviceName: "matrix-js-sdk e2ee scenario",
});

/**
 * newClient creates a client whose secret-storage callbacks remember the
 * keys this scenario creates (there is no user to ask for them).
 */
function newClient(creds) {
    const ssKeys = new Map();
    return baseClient(creds, {
        cryptoCallbacks: {
            getSecretStorageKey: async ({ keys }) => {
                const id = Object.keys(keys).find((k) => ssKeys.has(k));
                return id ? [id, ssKeys.get(id)] : null;
            },
            cacheSecretStorageKey: (keyId, _info, key) => ssKeys.set(keyId, key),
        },
    });
}

/**
 * bootstrapCrossSigning creates and uploads client's cross-signing keys.
 * The user-interactive auth callback first tries without auth (the spec
 * lets a first upload through) and answers a 401 with m.login.password.
 * It returns how the upload was authorised.
 */
async function bootstrapCrossSigning(client) {
    let how = "no UIA needed";
    await client.getCrypto().bootstrapCrossSigning({
        setupNewCrossSigning: true,
        authUploadDeviceSigningKeys: async (makeRequest) => {
            try {
                await makeRequest(null);
                return;
            } catch (err) {
                if (err.httpStatus !== 401 || !err.data?.flows) throw err;
                const flows = JSON.stringify(err.data.flows);
                if (!flows.includes("m.login.password")) throw new Error(`UIA flows without m.login.password: ${flows}`);
                how = "UIA m.login.password";
                await makeRequest({
                    type: "m.login.password",
                    identifier: { type: "m.id.user", user: client.getUserId() },
                    password,
                    session: err.data.session,
                });
            }
        },
    });
    if (!(await client.getCrypto().isCrossSigningReady())) {
        const status = await client.getCrypto().getCrossSigningStatus();
        throw new Error(`cross-signing not ready after bootstrap: ${JSON.stringify(status)}`);
    }
    return { note: how };
}

/**
 * decryptedBodies lists, in timeline order, the bodies of sender's
 * encrypted messages in room that client has decrypted. It throws on a
 * decryption failure.
 */
function decryptedBodies(client, roomId, sender) {
    const room = client.getRoom(roomId);
    if (!room) return [];
    const got = [];
    for (const ev of room.getLiveTimeline().getEvents()) {
        if (ev.getSender() !== sender || !ev.isEncrypted()) continue;
        if (ev.isDecryptionFailure())
            throw new Error(
                `event ${ev.getId()} from ${sender} failed to decrypt: ${ev.decryptionFailureReason} (${ev.getContent().body ?? ""})`,
            );
        if (ev.isBeingDecrypted() || ev.shouldAttemptDecryption()) continue;
        if (ev.getType() !== "m.room.message") continue;
        got.push(ev.getClearContent()?.body);
    }
    return got;
}

/** pending describes sender's encrypted events in room that are not decrypted yet. */
function pending(client, roomId, sender) {
    const room = client.getRoom(roomId);
    if (!room) return `room ${roomId} unknown`;
    const evs = room
        .getLiveTimeline()
        .getEvents()
        .filter((e) => e.getSender() === sender && e.getWireType() === "m.room.encrypted");
    return `${evs.length} encrypted events from ${sender}: ${JSON.stringify(
        evs.map((e) => ({ id: e.getId(), type: e.getType(), failure: e.decryptionFailureReason ?? null })),
    )}`;
}

/** seesDecrypted waits until client has decrypted exactly want from sender, in order. */
function seesDecrypted(client, roomId, sender, want) {
    return waitFor(
        client,
        [sdk.RoomEvent.Timeline, sdk.MatrixEventEvent.Decrypted],
        () => {
            const got = decryptedBodies(client, roomId, sender);
            if (got.length > want.length) throw new Error(`unexpected messages: ${JSON.stringify(got)}`);
            if (got.length === want.length && !got.every((b, i) => b === want[i]))
                throw new Error(`wrong messages: ${JSON.stringify(got)}`);
            return got.length === want.length;
        },
        () => `${want.length} decrypted messages from ${sender} (${pending(client, roomId, sender)})`,
    );
}

async function main() {
    out(`e2ee: homeserver ${baseUrl}, run ${run}`);

    const credsA = await step("register user A (m.login.dummy)", () => account(`e2a-${run}`));
    const credsB = await step("register user B (m.login.dummy)", () => account(`e2b-${run}`));
    const a = newClient(credsA);
    const b = newClient(credsB);
    const A = credsA.user_id;
    const B = credsB.user_id;

    for (const [who, c] of [
        ["A", a],
        ["B", b],
    ]) {
        await step(`${who}: initRustCrypto (in-memory store)`, async () => {
            await c.initRustCrypto({ useIndexedDB: false });
            return { note: `crypto ${c.getCrypto().getVersion()}` };
        });
    }

    await step("A starts syncing", () => start(a));
    await step("B starts syncing", () => start(b));

    await step("A: device keys uploaded (keys/query sees A's device)", async () => {
        const devices = await a.getCrypto().getUserDeviceInfo([A], true);
        if (!devices.get(A)?.has(a.getDeviceId()))
            throw new Error(`A's device ${a.getDeviceId()} is missing from /keys/query`);
    });

    await step("A bootstraps cross-signing", () => bootstrapCrossSigning(a));
    await step("A's own device is cross-signed (A's keys/query shows the signature)", () =>
        poll(
            async () => (await a.getCrypto().getDeviceVerificationStatus(A, a.getDeviceId()))?.signedByOwner,
            `A's device ${a.getDeviceId()} signed by A's self-signing key`,
        ),
    );
    await step("A: replacing cross-signing keys needs UIA m.login.password", async () => {
        // A raw upload, so that A's identity stays as it is: the server must
        // ask for auth before it looks at the (here empty) keys.
        const upload = (body) => a.http.authedRequest(sdk.Method.Post, "/keys/device_signing/upload", undefined, body);
        let session;
        try {
            await upload({});
            throw new Error("the server accepted a second /keys/device_signing/upload without auth");
        } catch (err) {
            if (err.httpStatus !== 401) throw err;
            const flows = JSON.stringify(err.data?.flows ?? []);
            if (!flows.includes("m.login.password")) throw new Error(`401 without an m.login.password flow: ${flows}`);
            session = err.data.session;
        }
        await upload({ auth: { type: "m.login.password", identifier: { type: "m.id.user", user: A }, password, session } });
        if (!(await a.getCrypto().isCrossSigningReady())) throw new Error("A's cross-signing is no longer ready");
    });
    await step("B bootstraps cross-signing", () => bootstrapCrossSigning(b));

    await step("A: secret storage and a new key backup (bootstrapSecretStorage)", async () => {
        const crypto = a.getCrypto();
        await crypto.bootstrapSecretStorage({
            createSecretStorageKey: () => crypto.createRecoveryKeyFromPassphrase(),
            setupNewSecretStorage: true,
            setupNewKeyBackup: true,
        });
        if (!(await crypto.isSecretStorageReady())) throw new Error("secret storage not ready after bootstrap");
        const version = await poll(() => crypto.getActiveSessionBackupVersion(), "an active key backup");
        const info = await crypto.getKeyBackupInfo();
        const trust = info ? await crypto.isKeyBackupTrusted(info) : null;
        if (!trust?.trusted) throw new Error(`backup ${version} is not trusted: ${JSON.stringify(trust)}`);
        return { note: `backup version ${version}` };
    });

    await step("B: checkKeyBackupAndEnable (no backup yet)", async () => {
        const check = await b.getCrypto().checkKeyBackupAndEnable();
        if (check) throw new Error(`B has no backup, but the check found ${JSON.stringify(check.backupInfo)}`);
    });

    await step("A sees B's cross-signing keys", async () => {
        if (!(await a.getCrypto().userHasCrossSigningKeys(B, true)))
            throw new Error(`no cross-signing keys for ${B} in /keys/query`);
    });

    const roomId = await step("A creates an encrypted room (m.megolm.v1.aes-sha2)", async () => {
        const res = await a.createRoom({
            preset: "private_chat",
            name: `e2ee scenario ${run}`,
            initial_state: [
                { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
            ],
        });
        if (!res.room_id) throw new Error(`createRoom answered without room_id: ${JSON.stringify(res)}`);
        return res.room_id;
    });

    await step("A sees the room as encrypted via sync", () =>
        poll(
            async () => a.getRoom(roomId)?.getMyMembership() === "join" && a.getCrypto().isEncryptionEnabledInRoom(roomId),
            `room ${roomId} joined and encrypted in A's client`,
        ),
    );

    await step("A invites B", () => a.invite(roomId, B));
    await step("B sees the invite via sync", () =>
        waitFor(
            b,
            [sdk.RoomEvent.MyMembership, sdk.ClientEvent.Room],
            () => b.getRoom(roomId)?.getMyMembership() === "invite",
            `invite to ${roomId} in B's sync`,
        ),
    );
    await step("B joins the room", () => b.joinRoom(roomId));
    await step("A sees B's join via sync", () =>
        waitFor(
            a,
            sdk.RoomMemberEvent.Membership,
            () => a.getRoom(roomId)?.getMember(B)?.membership === "join",
            "B's join in A's sync",
        ),
    );

    // Only now: the Rust crypto tracks (and keeps fresh) the devices of users
    // it shares an encrypted room with.
    await step("A sees B's device cross-signed by B (signatures/upload)", async () => {
        try {
            await poll(
                async () => (await a.getCrypto().getDeviceVerificationStatus(B, b.getDeviceId()))?.signedByOwner,
                `B's device ${b.getDeviceId()} signed by B's self-signing key in A's view`,
            );
        } catch (err) {
            // Show what the server answers, to tell a server fault from a client one.
            const res = await a.http.authedRequest(sdk.Method.Post, "/keys/query", undefined, {
                device_keys: { [B]: [] },
            });
            const dev = res.device_keys?.[B]?.[b.getDeviceId()];
            throw new Error(
                `${err.message}; /keys/query now gives the device signatures ${JSON.stringify(dev?.signatures)} ` +
                    `and self-signing key ${JSON.stringify(res.self_signing_keys?.[B]?.keys)}`,
            );
        }
    });

    const fromA = ["A1: hello B, this is encrypted", "A2: can you read me?"];
    const fromB = ["B1: yes, loud and clear"];

    await step("A sends 2 encrypted messages", async () => {
        for (const body of fromA) await a.sendTextMessage(roomId, body);
        const sent = a
            .getRoom(roomId)
            .getLiveTimeline()
            .getEvents()
            .filter((e) => e.getSender() === A && e.getType() === "m.room.message");
        const plain = sent.filter((e) => !e.isEncrypted());
        if (plain.length > 0) throw new Error(`${plain.length} of A's messages were sent unencrypted`);
    });
    await step("B decrypts A's 2 messages", () => seesDecrypted(b, roomId, A, fromA));

    await step("B sends 1 encrypted message", async () => {
        for (const body of fromB) await b.sendTextMessage(roomId, body);
    });
    await step("A decrypts B's message", () => seesDecrypted(a, roomId, B, fromB));

    await step(
        "A's room keys reach the server-side key backup",
        async () => {
            const version = await a.getCrypto().getActiveSessionBackupVersion();
            let last = "";
            const n = await poll(
                async () => {
                    const res = await a.http.authedRequest(sdk.Method.Get, "/room_keys/keys", { version });
                    const sessions = Object.keys(res?.rooms?.[roomId]?.sessions ?? {});
                    last = JSON.stringify(res).slice(0, 300);
                    // A's own outbound session and the one B shared.
                    return sessions.length >= 2 && sessions.length;
                },
                () => `2 sessions of ${roomId} in backup ${version} (last answer: ${last})`,
                25_000,
            );
            return { note: `${n} sessions backed up` };
        },
        { soft: true },
    );

}

runScenario(main);

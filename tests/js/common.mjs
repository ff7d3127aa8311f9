// Shared harness of the matrix-js-sdk scenarios (scenario.mjs, e2ee.mjs):
// steps with one output line each, waiting helpers, registration and
// clients, and the end of a run.
//
// A scenario prints one line per step ("ok   <step>" or "FAIL <step>: <why>")
// and exits 0 when every step passed, 1 otherwise. Steps after a failed
// required step are not run; a failed "soft" step is reported and the
// scenario goes on. Set MATRIXOS_JS_DEBUG=1 to see the SDK's own log.

import "./node20.mjs";
import * as sdk from "matrix-js-sdk";

/**
 * harness sets up a scenario called name against the homeserver in
 * MATRIXOS_URL (exiting with status 2 without it). The options are the
 * scenario's time limit (globalTimeoutMs), the default wait of waitFor and
 * poll (waitMs), how many SDK warnings and errors to keep for the report
 * (logLines) and the display name of the devices account creates
 * (deviceName).
 */
export function harness(name, { globalTimeoutMs, waitMs, logLines, deviceName }) {
    const baseUrl = process.env.MATRIXOS_URL;
    if (!baseUrl) {
        console.error(`${name}: MATRIXOS_URL is not set`);
        process.exit(2);
    }

    // The SDK (and the Rust crypto through it) logs a lot through
    // console.*. Keep its warnings and errors and show them only when
    // something fails.
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
                if (sdkLog.length > logLines) sdkLog.shift();
            };
        console.log = console.debug = console.info = console.trace = () => {};
        console.warn = keep("warn");
        console.error = keep("error");
    }

    const results = [];
    const failures = [];
    const clients = [];

    function finish() {
        const passed = results.filter((r) => r.ok).length;
        out(`${name} done: ${passed} steps ok, ${results.length - passed} failed`);
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
        out(`FAIL global timeout: scenario did not finish in ${globalTimeoutMs / 1000}s`);
        failures.push("global timeout");
        finish();
    }, globalTimeoutMs);

    /**
     * step runs fn as one named step. A failed step ends the scenario
     * unless soft is set. fn may return { value, note }: note is printed
     * after the step's name. step returns the value (fn's result without a
     * note), or undefined after a soft failure.
     */
    async function step(stepName, fn, { soft = false } = {}) {
        const start = Date.now();
        try {
            let v = await fn();
            let note = "";
            if (v && typeof v === "object" && "note" in v) {
                note = `: ${v.note}`;
                v = v.value;
            }
            results.push({ name: stepName, ok: true });
            out(`ok   ${stepName}${note} (${Date.now() - start} ms)`);
            return v;
        } catch (err) {
            results.push({ name: stepName, ok: false });
            failures.push(stepName);
            out(`FAIL ${stepName}: ${describe(err)}`);
            if (!soft) {
                out(`${name} stopped: the remaining steps depend on this one`);
                finish();
            }
            return undefined;
        }
    }

    /**
     * waitFor resolves once check() returns a truthy value, testing it now
     * and after every event (a name or a list of names) emitted by
     * emitter; it rejects after ms with what (a string or a function giving
     * one).
     */
    function waitFor(emitter, event, check, what, ms = waitMs) {
        const events = Array.isArray(event) ? event : [event];
        return new Promise((resolve, reject) => {
            let done = false;
            const test = () => {
                if (done) return;
                let v;
                try {
                    v = check();
                } catch (err) {
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

    /** poll resolves with check()'s first truthy value, trying every second. */
    async function poll(check, what, ms = waitMs) {
        const deadline = Date.now() + ms;
        for (;;) {
            const v = await check();
            if (v) return v;
            if (Date.now() > deadline) {
                throw new Error(`timed out after ${ms} ms waiting for ${typeof what === "function" ? what() : what}`);
            }
            await new Promise((r) => setTimeout(r, 1000));
        }
    }

    const run = Math.random().toString(36).slice(2, 8);
    const password = `pw-${run}-secret`;

    /** account registers localpart (m.login.dummy), or logs in if it exists. */
    async function account(localpart) {
        const anon = sdk.createClient({ baseUrl });
        const body = {
            username: localpart,
            password,
            initial_device_display_name: deviceName,
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

    /** newClient creates a client for creds, with extra createClient options. */
    function newClient(creds, opts = {}) {
        const c = sdk.createClient({
            baseUrl,
            accessToken: creds.access_token,
            userId: creds.user_id,
            deviceId: creds.device_id,
            timelineSupport: true,
            ...opts,
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

    /** runScenario runs main, the scenario's steps, and ends the process with their outcome. */
    function runScenario(main) {
        main()
            .then(() => {
                clearTimeout(timer);
                finish();
            })
            .catch((err) => {
                out(`FAIL unexpected error: ${describe(err)}`);
                if (err?.stack) out(err.stack);
                failures.push("unexpected");
                finish();
            });
    }

    return { baseUrl, out, run, password, step, waitFor, poll, account, newClient, start, runScenario };
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
export function describe(err) {
    if (err && err.httpStatus !== undefined) {
        const data = err.data ? JSON.stringify(err.data) : "";
        return `HTTP ${err.httpStatus} ${err.errcode ?? ""} ${data} (${err.url ?? "?"})`.replace(/\s+/g, " ");
    }
    return err && err.message ? err.message : String(err);
}

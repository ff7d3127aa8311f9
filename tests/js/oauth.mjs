// OAuth 2.0 scenario: matrix-js-sdk's OAuth helpers log in to a Matrix OS
// node as Element Web does. The SDK discovers auth_metadata, registers the
// client, builds the authorization URL (PKCE, state, nonce, the openid and
// Matrix scopes); the script follows the node's HTML login and consent
// pages as a browser would (cookies, forms with their CSRF token); the SDK
// completes the code grant (checking the ID token), refreshes with its
// OidcTokenRefresher, and the script revokes the session.
//
// Usage: MATRIXOS_URL=http://127.0.0.1:8008 node oauth.mjs
//
// The output, exit status and debugging switch are common.mjs's.

import * as sdk from "matrix-js-sdk";

import { harness } from "./common.mjs";

const { baseUrl, out, run, step, account, runScenario } = harness("oauth", {
    globalTimeoutMs: 60_000,
    waitMs: 10_000,
    logLines: 60,
    deviceName: "matrix-js-sdk oauth",
});

const appOrigin = "https://app.example.test";
const redirectUri = `${appOrigin}/cb`;

// The SDK's OAuth helpers keep their state in window.sessionStorage, as
// in a browser; Node has none.
class MemoryStorage {
    #m = new Map();
    get length() {
        return this.#m.size;
    }
    key(i) {
        return [...this.#m.keys()][i] ?? null;
    }
    getItem(k) {
        return this.#m.has(k) ? this.#m.get(k) : null;
    }
    setItem(k, v) {
        this.#m.set(k, String(v));
    }
    removeItem(k) {
        this.#m.delete(k);
    }
    clear() {
        this.#m.clear();
    }
}
globalThis.window = globalThis.window ?? globalThis;
window.sessionStorage = new MemoryStorage();
window.localStorage = new MemoryStorage();
window.location = new URL(appOrigin + "/");

/** Browser is a cookie jar that follows the node's redirects and stops at any other. */
class Browser {
    cookies = new Map();

    async request(method, url, form) {
        for (let i = 0; i < 10; i++) {
            const headers = { cookie: [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ") };
            let body;
            if (form) {
                headers["content-type"] = "application/x-www-form-urlencoded";
                body = new URLSearchParams(form).toString();
            }
            const res = await fetch(url, { method, headers, body, redirect: "manual" });
            for (const c of res.headers.getSetCookie()) {
                const [pair] = c.split(";");
                const eq = pair.indexOf("=");
                this.cookies.set(pair.slice(0, eq), pair.slice(eq + 1));
            }
            const text = await res.text();
            if (res.status < 300 || res.status >= 400) return { status: res.status, url, text };
            const next = new URL(res.headers.get("location"), url).toString();
            if (!next.startsWith(baseUrl + "/")) return { status: res.status, url, text, location: next };
            [method, url, form] = ["GET", next, undefined];
        }
        throw new Error(`too many redirects from ${url}`);
    }

    /** submit posts the page's form with this action, its hidden fields and fill. */
    submit(page, action, fill) {
        const formRe = new RegExp(`<form[^>]*action="${action}"[^>]*>([\\s\\S]*?)</form>`);
        const m = page.text.match(formRe);
        if (!m) throw new Error(`${page.url} (status ${page.status}) has no form posting to ${action}`);
        const fields = {};
        for (const input of m[1].matchAll(/<input[^>]*type="hidden"[^>]*>/g)) {
            const name = input[0].match(/name="([^"]*)"/)?.[1];
            const value = input[0].match(/value="([^"]*)"/)?.[1] ?? "";
            if (name) fields[name] = value.replaceAll("&#43;", "+").replaceAll("&amp;", "&").replaceAll("&#34;", '"');
        }
        return this.request("POST", new URL(action, baseUrl).toString(), { ...fields, ...fill });
    }
}

async function main() {
    out(`oauth: homeserver ${baseUrl}, run ${run}`);
    const localpart = `jsoauth-${run}`;
    const creds = await step("register a user (m.login.dummy)", () => account(localpart));
    const anon = sdk.createClient({ baseUrl });

    const metadata = await step("discover auth_metadata (validated, with signing keys)", async () => {
        const m = await anon.getAuthMetadata();
        if (!m.signingKeys?.length) throw new Error("no signing keys");
        return { value: m, note: m.issuer };
    });
    const clientId = await step("register the client (dynamic registration)", () =>
        sdk.registerOidcClient(metadata, {
            clientName: "matrix-js-sdk OAuth test",
            clientUri: `${appOrigin}/`,
            redirectUris: [redirectUri],
            applicationType: "web",
            contacts: [],
            tosUri: `${appOrigin}/tos`,
            policyUri: `${appOrigin}/policy`,
        }),
    );
    const nonce = `nonce-${run}`;
    const authUrl = await step("build the authorization URL", () =>
        sdk.generateOidcAuthorizationUrl({ metadata, redirectUri, clientId, homeserverUrl: baseUrl, nonce }),
    );

    const browser = new Browser();
    const callback = await step("log in and consent through the HTML pages", async () => {
        let page = await browser.request("GET", authUrl);
        if (!page.url.includes("/oauth2/login")) throw new Error(`authorize led to ${page.url} (${page.status})`);
        page = await browser.submit(page, "/oauth2/login", { username: localpart, password: `pw-${run}-secret` });
        if (!page.url.includes("/oauth2/consent")) throw new Error(`login led to ${page.url} (${page.status}): ${page.text.slice(0, 300)}`);
        page = await browser.submit(page, "/oauth2/consent", { decision: "allow" });
        if (!page.location?.startsWith(redirectUri)) throw new Error(`consent led to ${page.location ?? page.url}`);
        return new URL(page.location).searchParams;
    });
    const grant = await step("complete the code grant (PKCE, ID token checked)", () =>
        sdk.completeAuthorizationCodeGrant(callback.get("code"), callback.get("state")),
    );
    const { access_token: accessToken, refresh_token: refreshToken } = grant.tokenResponse;

    const deviceId = await step("whoami with the OAuth access token", async () => {
        const c = sdk.createClient({ baseUrl, accessToken });
        const who = await c.whoami();
        if (who.user_id !== creds.user_id) throw new Error(`whoami says ${who.user_id}`);
        return { value: who.device_id, note: who.device_id };
    });

    const refreshed = await step("refresh with OidcTokenRefresher (rotation)", async () => {
        const refresher = new sdk.OidcTokenRefresher(metadata.issuer, clientId, redirectUri, deviceId, grant.idTokenClaims);
        await refresher.oidcClientReady;
        const tokens = await refresher.doRefreshAccessToken(refreshToken);
        if (!tokens.accessToken || tokens.accessToken === accessToken || tokens.refreshToken === refreshToken) {
            throw new Error(`tokens not rotated: ${JSON.stringify(tokens)}`);
        }
        const who = await sdk.createClient({ baseUrl, accessToken: tokens.accessToken }).whoami();
        if (who.device_id !== deviceId) throw new Error(`device changed to ${who.device_id}`);
        return tokens;
    });

    await step("revoke the session at the revocation endpoint", async () => {
        const res = await fetch(metadata.revocation_endpoint, {
            method: "POST",
            headers: { "content-type": "application/x-www-form-urlencoded" },
            body: new URLSearchParams({ token: refreshed.accessToken, token_type_hint: "access_token", client_id: clientId }),
        });
        if (res.status !== 200) throw new Error(`revocation answered ${res.status}`);
        try {
            await sdk.createClient({ baseUrl, accessToken: refreshed.accessToken }).whoami();
        } catch (err) {
            if (err.errcode === "M_UNKNOWN_TOKEN") return;
            throw err;
        }
        throw new Error("the revoked token still works");
    });
}

runScenario(main);

// OAuth 2.0 scenario: matrix-js-sdk's OAuth2 API logs in to a Matrix OS
// node as Element Web does. The SDK discovers and validates auth_metadata,
// registers the client, builds the authorization URL (PKCE, state, the
// Matrix scopes, response_mode=fragment); the script follows the node's
// HTML login and consent pages as a browser would (cookies, forms with
// their CSRF token); the SDK completes the code grant and refreshes the
// tokens, both by hand and on its own when the node reports the access
// token unknown, and logging out revokes both tokens at the revocation
// endpoint.
//
// Usage: MATRIXOS_URL=http://127.0.0.1:8008 node oauth.mjs
//
// The output, exit status and debugging switch are common.mjs's.

import "./node20.mjs";
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

    const metadata = await step("discover auth_metadata (validated)", async () => {
        const m = await anon.getAuthMetadata();
        return { value: m, note: m.issuer };
    });
    const clientId = await step("register the client (dynamic registration)", () =>
        sdk.OAuth2.registerClient(metadata, {
            client_name: "matrix-js-sdk OAuth test",
            client_uri: `${appOrigin}/`,
            redirect_uris: [redirectUri],
            application_type: "web",
            tos_uri: `${appOrigin}/tos`,
            policy_uri: `${appOrigin}/policy`,
        }),
    );
    const oauth = new sdk.OAuth2(metadata, { clientId });
    const state = `state-${run}`;
    const authUrl = await step("build the authorization URL (PKCE, response_mode=fragment)", () =>
        oauth.generateAuthorizationCodeGrantUrl(state, redirectUri),
    );

    const browser = new Browser();
    const code = await step("log in and consent through the HTML pages", async () => {
        let page = await browser.request("GET", authUrl);
        if (!page.url.includes("/oauth2/login")) throw new Error(`authorize led to ${page.url} (${page.status})`);
        page = await browser.submit(page, "/oauth2/login", { username: localpart, password: `pw-${run}-secret` });
        if (!page.url.includes("/oauth2/consent")) throw new Error(`login led to ${page.url} (${page.status}): ${page.text.slice(0, 300)}`);
        page = await browser.submit(page, "/oauth2/consent", { decision: "allow" });
        if (!page.location?.startsWith(redirectUri)) throw new Error(`consent led to ${page.location ?? page.url}`);
        const callback = new URL(page.location);
        if (callback.search) throw new Error(`the callback carries a query with response_mode=fragment: ${page.location}`);
        const params = new URLSearchParams(callback.hash.slice(1));
        if (params.get("state") !== state) throw new Error(`callback state ${params.get("state")}, want ${state}`);
        if (!params.get("code")) throw new Error(`no code in the callback ${page.location}`);
        return params.get("code");
    });
    const grant = await step("complete the code grant (PKCE)", async () => {
        const tokens = await oauth.completeAuthorizationCodeGrant(code, redirectUri);
        if (!tokens.refresh_token || !tokens.expires_in) throw new Error(`no refresh token or expiry: ${JSON.stringify(tokens)}`);
        return tokens;
    });

    const deviceId = await step("whoami with the OAuth access token (the requested device)", async () => {
        const who = await sdk.createClient({ baseUrl, accessToken: grant.access_token }).whoami();
        if (who.user_id !== creds.user_id) throw new Error(`whoami says ${who.user_id}`);
        if (who.device_id !== oauth.context.deviceId) throw new Error(`device ${who.device_id}, scope asked for ${oauth.context.deviceId}`);
        return { value: who.device_id, note: who.device_id };
    });

    const refreshed = await step("refresh (refresh token grant, rotation)", async () => {
        const tokens = await oauth.performRefreshTokenGrant(grant.refresh_token);
        if (tokens.access_token === grant.access_token || tokens.refresh_token === grant.refresh_token) {
            throw new Error(`tokens not rotated: ${JSON.stringify(tokens)}`);
        }
        const who = await sdk.createClient({ baseUrl, accessToken: tokens.access_token }).whoami();
        if (who.device_id !== deviceId) throw new Error(`device changed to ${who.device_id}`);
        return tokens;
    });

    // A client still holding the access token that the refresh replaced
    // gets M_UNKNOWN_TOKEN, refreshes on its own and retries.
    const client = sdk.createClient({
        baseUrl,
        accessToken: grant.access_token,
        refreshToken: refreshed.refresh_token,
        oauthClientId: clientId,
        deviceId,
        userId: creds.user_id,
    });
    await step("the client refreshes on M_UNKNOWN_TOKEN and retries", async () => {
        const who = await client.whoami();
        if (who.device_id !== deviceId) throw new Error(`device changed to ${who.device_id}`);
        const now = client.getAccessToken();
        if (now === grant.access_token || now === refreshed.access_token) throw new Error("the client did not refresh");
        if (client.getRefreshToken() === refreshed.refresh_token) throw new Error("the refresh token was not rotated");
    });

    await step("log out: both tokens revoked at the revocation endpoint", async () => {
        const [accessToken, refreshToken] = [client.getAccessToken(), client.getRefreshToken()];
        await client.logout();
        try {
            await sdk.createClient({ baseUrl, accessToken }).whoami();
            throw new Error("the revoked access token still works");
        } catch (err) {
            if (err.errcode !== "M_UNKNOWN_TOKEN") throw err;
        }
        try {
            await oauth.performRefreshTokenGrant(refreshToken);
            throw new Error("the revoked refresh token still works");
        } catch (err) {
            if (!(err instanceof sdk.OAuth2HTTPError)) throw err;
        }
    });
}

runScenario(main);

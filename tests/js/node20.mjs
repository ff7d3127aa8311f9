// Node 20 support for matrix-js-sdk 43, which declares Node >= 22 but,
// of what Node 22 added, uses only Promise.withResolvers (ES2024) without
// a fallback. This module defines it where Node lacks it, as the standard
// does; every script imports it before the SDK so the SDK finds it.

if (typeof Promise.withResolvers !== "function") {
    Object.defineProperty(Promise, "withResolvers", {
        configurable: true,
        writable: true,
        value: function withResolvers() {
            let resolve;
            let reject;
            const promise = new this((res, rej) => {
                resolve = res;
                reject = rej;
            });
            return { promise, resolve, reject };
        },
    });
}

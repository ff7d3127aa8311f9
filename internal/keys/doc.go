// Package keys is the server side of end-to-end encryption: device keys,
// one-time and fallback keys, cross-signing keys and signatures,
// send-to-device messaging, device-list tracking for /sync, and
// server-side key backup (Client-Server API v1.19, "End-to-End
// Encryption" and "Send-to-Device messaging").
//
// Dehydrated devices (MSC3814) are not part of spec v1.19, so they are not
// served.
package keys

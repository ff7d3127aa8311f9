// Package keys is the server side of end-to-end encryption: device keys,
// one-time and fallback keys, cross-signing keys and signatures,
// send-to-device messaging, device-list tracking for /sync, and
// server-side key backup (Client-Server API v1.19, "End-to-End
// Encryption" and "Send-to-Device messaging").
//
// Over federation (once node calls EnableFederation) it serves
// /user/devices, /user/keys/query and /user/keys/claim for local users,
// asks other servers for their users' keys when clients query or claim
// them, keeps the device lists of remote users who share a room with a
// local user (remotedevices.go), announces local device and cross-signing
// changes as m.device_list_update and m.signing_key_update EDUs
// (announce.go), and sends and receives m.direct_to_device EDUs.
//
// Dehydrated devices (MSC3814) are not part of spec v1.19, so they are not
// served.
package keys

// Package pushers owns users' pushers and push delivery (the pusher half
// of the Client-Server "Push notifications" module): GET /pushers,
// POST /pushers/set, GET /notifications, and the HTTP pushes to push
// gateways (the Push Gateway API's /_matrix/push/v1/notify).
//
// Package push decides which events notify whom; its OnNotify hook hands
// each notification here. The notification is recorded for
// /notifications, and when the user has http pushers, a delivery job goes
// on a bounded in-memory queue. Workers POST it to each pusher's gateway
// through a netguard client, so gateways on loopback, private or other
// special-purpose addresses are refused unless the operator allows their
// range (allow_private_networks). Failed pushes are retried with
// exponential backoff; pushkeys the gateway rejects lose their pusher.
//
// A pusher belongs to the device whose access token created it and is
// removed with that device, and with the account on deactivation.
package pushers

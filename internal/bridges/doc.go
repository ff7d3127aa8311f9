// Package bridges hosts bridges to other chat networks in the node.
//
// A built-in bridge is a mautrix bridgev2 network connector (a Kind, listed
// by internal/node); internal/bridges/host runs it in-process as an
// application service. Enabling a bridge writes its files:
//
//	<data>/appservices/bridge-<name>.yaml  its registration (fresh tokens), loaded
//	                                      like any other appservice's
//	<data>/bridges/<name>/config.yaml     its config (bridge, encryption and network sections)
//	<data>/bridges/<name>/bridge.db       its database (SQLite)
//	<data>/bridges/<name>/bridge.log      its recent log lines
//
// All of them are 0600 in 0700 directories. internal/bridges/bridgetest
// runs a bridge end to end in tests.
package bridges

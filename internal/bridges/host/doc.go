// Package host runs one mautrix bridgev2 bridge in-process against a
// Matrix OS node, as an ordinary application service over loopback HTTP:
// the bridge listens on the address of its registration's url, the node
// delivers transactions there, and the bridge calls the node's client API
// with its as_token.
//
// The bridge's settings come from <dir>/config.yaml (the bridge, network,
// encryption, backfill and matrix sections of a mautrix bridge config)
// over defaults built in code; what must match the node (homeserver
// address and domain, the appservice's ID, tokens, address, bot and user
// namespace, the database) comes from the options and the registration
// file and cannot be changed by the config file. The database is the
// SQLite file <dir>/bridge.db, opened through the ncruces driver (no cgo
// sqlite), with foreign keys on and write-ahead logging.
//
// End-to-bridge encryption uses bridgev2's appservice mode (MSC2409 to-device
// events, MSC3202 device lists and one-time key counts in transactions,
// MSC4190 device management), with goolm when built with -tags goolm; it
// needs cgo, as bridgev2's crypto helper does.
//
// Run needs a binary built with -tags goolm (as make build does); without
// it, Run refuses with ErrNoGoolm.
package host

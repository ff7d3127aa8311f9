// Package node is the one wiring place: it opens the database, loads the
// signing key, builds every service, registers their routes and runs the
// HTTP listeners with graceful shutdown.
package node

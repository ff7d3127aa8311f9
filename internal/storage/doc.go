// Package storage owns the node's database: SQLite (the embedded default)
// or PostgreSQL behind one schema, versioned migrations that each package
// registers for its own tables, a single batched writer (group commit),
// the node-wide stream position that orders everything clients sync, and
// the changes that another process (the admin CLI) records for the running
// node to apply (RecordChange, WatchChanges).
//
// Queries are written once in PostgreSQL's placeholder style ($1, $2); the
// thin dialect layer rewrites them for SQLite.
package storage

package bridges

import "github.com/matrixos/matrixos/internal/storage"

// Migrations are the bridge manager's table: which bridges are enabled
// (enabled 1) or disabled (0), and for an external bridge the program
// that runs it. A bridge enabled or disabled by the admin CLI is recorded
// here with a ChangeBridges for the running node.
var Migrations = []storage.Migration{{
	Component: "bridges",
	Version:   1,
	SQL: `
CREATE TABLE bridges (
	name TEXT PRIMARY KEY,
	enabled INTEGER NOT NULL,
	binary_path TEXT NOT NULL,
	updated_ts BIGINT NOT NULL
);
`,
}}

// ChangeBridges is the storage change `matrixos bridge enable|disable`
// records: the running node loads the registrations again and starts or
// stops bridges to match the table.
const ChangeBridges = "bridges.changed"

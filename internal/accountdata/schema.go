package accountdata

import "github.com/matrixos/matrixos/internal/storage"

// Migrations are the account data tables. room_id is empty for global data.
var Migrations = []storage.Migration{{
	Component: "accountdata",
	Version:   1,
	SQL: `
CREATE TABLE account_data (
	user_id TEXT NOT NULL,
	room_id TEXT NOT NULL,
	type TEXT NOT NULL,
	content TEXT NOT NULL,
	pos BIGINT NOT NULL,
	PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_user_pos ON account_data (user_id, pos);
`,
}}

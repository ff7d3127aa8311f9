package spectest

import (
	"fmt"
	"path/filepath"
	"strings"
)

// A nullable amendment lets one property of the spec's schema be null as
// well as its own type, where the servers and clients in use agree on a
// null the schema does not allow. The rest of the schema still applies, and
// each amendment says why it exists.
type nullable struct {
	file    string // the YAML file, relative to data/api, "/"-separated
	pointer string // the property's schema within it
	reason  string
}

const joinedMember = "/paths/~1rooms~1{roomId}~1joined_members/get/responses/200/content/application~1json/schema/properties/joined/patternProperties/^@/properties/"

// nullables lists the amendments.
var nullables = []nullable{
	{"client-server/rooms.yaml", joinedMember + "display_name",
		"Synapse answers null for a member without one, Complement's TestRoomState wants the key present, and clients read null as absent"},
	{"client-server/rooms.yaml", joinedMember + "avatar_url",
		"Synapse answers null for a member without one, Complement's TestRoomState wants the key present, and clients read null as absent"},
}

// amend applies the amendments for file, a parsed spec document. A pointer
// that no longer selects a typed schema is an error, so a change of the spec
// data is noticed rather than leaving a stale amendment.
func amend(file string, doc any) error {
	name := filepath.ToSlash(file)
	for _, n := range nullables {
		if !strings.HasSuffix(name, "/data/api/"+n.file) {
			continue
		}
		v, err := lookupPointer(doc, n.pointer)
		if err != nil {
			return fmt.Errorf("amending %s: %w", n.file, err)
		}
		sch, _ := v.(map[string]any)
		typ, ok := sch["type"].(string)
		if !ok {
			return fmt.Errorf("amending %s: %s has no single type", n.file, n.pointer)
		}
		sch["type"] = []any{typ, "null"}
	}
	return nil
}

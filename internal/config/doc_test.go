package config

import (
	"os"
	"strings"
	"testing"
)

// TestDocsListEverySetting keeps docs/configuration.md true: every setting
// must be documented there with its flag and environment variable.
func TestDocsListEverySetting(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	c := Default()
	for _, f := range c.fields() {
		for _, want := range []string{"`" + f.name + "`", "`--" + FlagName(f.name) + "`", "`" + EnvName(f.name) + "`"} {
			if !strings.Contains(doc, want) {
				t.Errorf("docs/configuration.md does not mention %s", want)
			}
		}
	}
}

package bridges

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"

	mautrixas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/appservice"
)

// Kind is a built-in bridge: a bridgev2 network connector the node can
// run in-process.
type Kind struct {
	// Name is the CLI name ("slack"); the appservice ID is "bridge-"+Name.
	Name string
	// Description is one line for `matrixos bridge list`.
	Description string
	// NewNetwork returns a fresh connector (one per run of the bridge).
	NewNetwork func() bridgev2.NetworkConnector
}

// validName is what a bridge name may be: it becomes a directory, part of
// the appservice ID and the localpart of the bot and the ghosts.
var validName = regexp.MustCompile(`^[a-z][a-z0-9]{0,31}$`)

// CheckName refuses a name that cannot name a bridge.
func CheckName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("%w: bridge name %q: use 1 to 32 lowercase letters and digits, starting with a letter", ErrInvalid, name)
	}
	return nil
}

// Dir is the bridge's directory: <data>/bridges/<name>.
func Dir(dataDir, name string) string { return filepath.Join(dataDir, "bridges", name) }

// AppserviceID is the bridge's appservice ID.
func AppserviceID(name string) string { return "bridge-" + name }

// RegistrationFile is where the bridge's registration is written, among
// the node's other appservices: <data>/appservices/bridge-<name>.yaml.
func RegistrationFile(dataDir, name string) string {
	return filepath.Join(appservice.Dir(dataDir), AppserviceID(name)+".yaml")
}

// ConfigFile is the bridge's config: <data>/bridges/<name>/config.yaml.
func ConfigFile(dataDir, name string) string { return filepath.Join(Dir(dataDir, name), "config.yaml") }

// Files are the registration and config of one bridge, as Write writes
// them.
type Files struct {
	DataDir    string
	ServerName string
	Name       string
	// Network is the network section of config.yaml: the connector's
	// example config for a built-in bridge.
	Network string
	// Admins get the bridge's admin permission; every user of the server
	// gets the user permission (log in, bridge their chats).
	Admins []id.UserID
	// ShareWithUnverified makes the bridge share its room keys with
	// devices that are not cross-signed (mautrix's default shares them with
	// cross-signed devices only), for test clients that do not
	// cross-sign.
	ShareWithUnverified bool
}

// Write writes the registration (fresh tokens, a free loopback port for the
// bridge to listen on) and the config, each unless it exists already: a
// bridge enabled again keeps its tokens, settings and data. Both files are
// 0600 in 0700 directories.
func (f Files) Write() error {
	if err := CheckName(f.Name); err != nil {
		return err
	}
	if err := os.MkdirAll(Dir(f.DataDir, f.Name), 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(appservice.Dir(f.DataDir), 0o700); err != nil {
		return err
	}
	if err := f.writeRegistration(); err != nil {
		return err
	}
	return f.writeConfig()
}

// Registration builds the bridge's registration with fresh tokens and url.
func (f Files) Registration(url string) *mautrixas.Registration {
	server := regexp.QuoteMeta(f.ServerName)
	reg := &mautrixas.Registration{
		ID:                  AppserviceID(f.Name),
		URL:                 url,
		AppToken:            accounts.RandomToken("as_", 32),
		ServerToken:         accounts.RandomToken("hs_", 32),
		SenderLocalpart:     f.Name + "bot",
		EphemeralEvents:     true,
		SoruEphemeralEvents: true,
		MSC3202:             true,
		MSC4190:             true,
	}
	rateLimited := false
	reg.RateLimited = &rateLimited
	reg.Namespaces.UserIDs = mautrixas.NamespaceList{
		{Regex: "@" + f.Name + "bot:" + server, Exclusive: true},
		{Regex: "@" + f.Name + "_.*:" + server, Exclusive: true},
	}
	reg.Namespaces.RoomAliases = mautrixas.NamespaceList{{Regex: "#" + f.Name + "_.*:" + server, Exclusive: true}}
	return reg
}

func (f Files) writeRegistration() error {
	path := RegistrationFile(f.DataDir, f.Name)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	data, err := f.Registration(fmt.Sprintf("http://127.0.0.1:%d", port)).YAML()
	if err != nil {
		return err
	}
	header := fmt.Sprintf("# Written by `matrixos bridge enable %s`: the registration of the bridge's appservice.\n", f.Name)
	return writeNew(path, []byte(header+data))
}

// freePort asks the system for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port for the bridge: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var configTemplate = template.Must(template.New("config").Parse(`# Config of the Matrix OS bridge "{{.Name}}", written by ` + "`matrixos bridge enable {{.Name}}`" + `.
# The sections are those of a mautrix bridgev2 bridge's config; what must match
# the node (homeserver, appservice, database, logging) is set by the node.
bridge:
    command_prefix: "!{{.Name}}"
    permissions:
        {{printf "%q" .ServerName}}: user
{{- range .Admins}}
        {{printf "%q" .}}: admin
{{- end}}
encryption:
    allow: true
    default: true
    require: false
    appservice: true
    msc4190: true
    allow_key_sharing: true
    pickle_key: {{.PickleKey}}
    verification_levels:
        receive: unverified
        send: unverified
        share: {{.Share}}
network:
{{.Network}}
`))

func (f Files) writeConfig() error {
	path := ConfigFile(f.DataDir, f.Name)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	share := "cross-signed-tofu"
	if f.ShareWithUnverified {
		share = "unverified"
	}
	network := strings.TrimRight(f.Network, "\n")
	if strings.TrimSpace(network) == "" {
		network = "{}"
	}
	var buf bytes.Buffer
	err := configTemplate.Execute(&buf, map[string]any{
		"Name": f.Name, "ServerName": f.ServerName, "Admins": f.Admins,
		"PickleKey": accounts.RandomToken("", 32), "Share": share,
		"Network": indent(network, "    "),
	})
	if err != nil {
		return err
	}
	return writeNew(path, buf.Bytes())
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "\n")
}

// writeNew writes a new 0600 file, refusing to replace one.
func writeNew(path string, data []byte) error {
	fd, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = fd.Write(data)
	return errors.Join(err, fd.Close())
}

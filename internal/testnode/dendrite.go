package testnode

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/dendriteconf"
)

// DendriteVersion is the Dendrite release the interop tests are written
// against; .ci/run installs it.
const DendriteVersion = "v0.13.8"

// dendriteStartTimeout bounds how long Dendrite may take to answer its
// first request (it runs its database migrations first).
const dendriteStartTimeout = 90 * time.Second

// Dendrite is a Dendrite homeserver a test runs on loopback as a second
// Matrix implementation to federate with. Its server name is
// 127.0.0.1:PORT, PORT being its HTTPS listener (federation and client
// API) with a certificate from the test's CA, which it also trusts for
// its own outbound federation; it may reach loopback addresses, fetches
// keys directly (no notary) and has open registration.
type Dendrite struct {
	// ServerName is 127.0.0.1:PORT.
	ServerName string
	// URL is its client API over plain HTTP.
	URL string
	// KeyID and Key are its signing key's ID and public key.
	KeyID id.KeyID
	Key   id.SigningKey
	// Dir holds its config, key, database and log (dendrite.log).
	Dir string

	t       testing.TB
	cmd     *exec.Cmd
	exited  chan struct{}
	counter atomic.Int64
}

// DendriteBinary returns the path of the dendrite binary: $MATRIXOS_DENDRITE,
// or dendrite on PATH. When there is none it skips tb, or fails it when
// MATRIXOS_REQUIRE_DENDRITE=1 (as .ci/run sets after installing it).
func DendriteBinary(tb testing.TB) string {
	tb.Helper()
	path := os.Getenv("MATRIXOS_DENDRITE")
	if path == "" {
		var err error
		if path, err = exec.LookPath("dendrite"); err != nil {
			path = ""
		}
	}
	if path == "" {
		msg := "Dendrite not found: set MATRIXOS_DENDRITE to its binary or put dendrite on PATH " +
			"(CGO_ENABLED=0 go install github.com/matrix-org/dendrite/cmd/dendrite@" + DendriteVersion + ")"
		if os.Getenv("MATRIXOS_REQUIRE_DENDRITE") == "1" {
			tb.Fatal(msg + " (MATRIXOS_REQUIRE_DENDRITE=1)")
		}
		tb.Skip(msg)
	}
	out, err := exec.Command(path, "-version").Output()
	if err != nil {
		tb.Fatalf("Dendrite: %s -version: %v", path, err)
	}
	if got := strings.TrimSpace(string(out)); "v"+got != DendriteVersion {
		tb.Fatalf("Dendrite: %s is version %s; the interop tests need %s", path, got, DendriteVersion)
	}
	return path
}

// StartDendrite runs Dendrite for the test (see [Dendrite]); it is stopped
// when the test ends, and its log is shown when the test failed.
func StartDendrite(t testing.TB, ca *CA) *Dendrite {
	t.Helper()
	bin := DendriteBinary(t)
	// The ports are chosen by binding and releasing them, as Dendrite
	// cannot take an open listener; another process may grab one in
	// between, so a start that fails to listen is tried again.
	var lastErr error
	for range 3 {
		d, err := startDendrite(t, bin, ca)
		if err == nil {
			return d
		}
		lastErr = err
		if !errors.Is(err, errDendriteExited) {
			break
		}
	}
	t.Fatalf("start Dendrite: %v", lastErr)
	return nil
}

var errDendriteExited = errors.New("dendrite exited")

func startDendrite(t testing.TB, bin string, ca *CA) (*Dendrite, error) {
	t.Helper()
	httpsAddr, httpAddr, err := freePorts()
	if err != nil {
		return nil, err
	}
	d := &Dendrite{
		ServerName: httpsAddr,
		URL:        "http://" + httpAddr,
		Dir:        t.TempDir(),
		t:          t,
		exited:     make(chan struct{}),
	}
	pub, err := dendriteconf.Write(d.Dir, "dendrite", dendriteconf.Options{
		ServerName: d.ServerName, Federation: true, LogLevel: "info",
	})
	if err != nil {
		return nil, err
	}
	d.KeyID = id.NewKeyID(id.KeyAlgorithmEd25519, "dendrite")
	d.Key = id.SigningKey(base64.RawStdEncoding.EncodeToString(pub))
	config := filepath.Join(d.Dir, dendriteconf.ConfigFile)
	certFile, keyFile := ca.Issue(t, "127.0.0.1", "localhost")
	logFile, err := os.Create(filepath.Join(d.Dir, "dendrite.log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor

	d.cmd = exec.Command(bin,
		"-config", config,
		"-http-bind-address", httpAddr,
		"-https-bind-address", httpsAddr,
		"-tls-cert", certFile, "-tls-key", keyFile,
		"-really-enable-open-registration",
	)
	d.cmd.Dir = d.Dir
	// Go's crypto/x509 reads SSL_CERT_FILE for the system roots: Dendrite
	// then verifies the test nodes' certificates against the test's CA.
	d.cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+ca.File)
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	d.cmd.SysProcAttr = dendriteProcAttr()
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	go func() {
		d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(d.stop)
	if err := d.waitReady(ca.File); err != nil {
		d.stop()
		return nil, fmt.Errorf("%w\n%s", err, d.logTail())
	}
	return d, nil
}

// freePorts returns two loopback addresses with ports free a moment ago.
func freePorts() (string, string, error) {
	var addrs []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", "", err
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs[0], addrs[1], nil
}

// waitReady polls both listeners (the HTTPS one trusting the CA) until
// they answer, Dendrite exits or the start timeout passes.
func (d *Dendrite) waitReady(caFile string) error {
	pool, err := config.LoadCertPool(caFile)
	if err != nil {
		return err
	}
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	urls := []string{d.URL + "/_matrix/client/versions", "https://" + d.ServerName + "/_matrix/federation/v1/version"}
	deadline := time.Now().Add(dendriteStartTimeout)
	for time.Now().Before(deadline) {
		for len(urls) > 0 && answers(client, urls[0]) {
			urls = urls[1:]
		}
		if len(urls) == 0 {
			return nil
		}
		select {
		case <-d.exited:
			return fmt.Errorf("%w: %v", errDendriteExited, d.cmd.ProcessState)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("dendrite did not answer %s within %v", urls[0], dendriteStartTimeout)
}

// answers reports whether a GET of the URL answers 200.
func answers(client *http.Client, url string) bool {
	resp, err := client.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// stop ends Dendrite (SIGTERM, then SIGKILL after 10 s) and, when the test
// failed, logs the end of its log.
func (d *Dendrite) stop() {
	select {
	case <-d.exited:
	default:
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(10 * time.Second):
			d.cmd.Process.Kill()
			<-d.exited
		}
	}
	if d.t.Failed() {
		d.t.Logf("Dendrite %s log:\n%s", d.ServerName, d.logTail())
	}
}

// logTail is the last lines of Dendrite's log.
func (d *Dendrite) logTail() string {
	b, err := os.ReadFile(filepath.Join(d.Dir, "dendrite.log"))
	if err != nil {
		return err.Error()
	}
	const max = 64 << 10
	if len(b) > max {
		b = b[len(b)-max:]
		b = b[bytes.IndexByte(b, '\n')+1:]
	}
	return strings.TrimSpace(string(b))
}

// Client returns an unauthenticated mautrix client for Dendrite's client
// API.
func (d *Dendrite) Client() *mautrix.Client {
	d.t.Helper()
	c, err := mautrix.NewClient(d.URL, "", "")
	if err != nil {
		d.t.Fatalf("new client: %v", err)
	}
	c.Client = &http.Client{Timeout: 2 * time.Minute}
	c.Log = zerologDiscard()
	return c
}

// Register creates a Dendrite user (with a unique name built from prefix)
// and returns a logged-in client.
func (d *Dendrite) Register(prefix string) *mautrix.Client {
	d.t.Helper()
	c := d.Client()
	name := fmt.Sprintf("%s%d", prefix, d.counter.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := c.RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: name, Password: Password})
	if err != nil {
		d.t.Fatalf("register %s on Dendrite: %v", name, err)
	}
	c.SetCredentials(resp.UserID, resp.AccessToken)
	c.DeviceID = resp.DeviceID
	return c
}

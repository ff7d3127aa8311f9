// Package matrixosrunner is a Complement deployment that runs each homeserver
// as a `matrixos serve` process on this machine, without Docker.
//
// run.sh copies this package into a Complement checkout and passes Deploy to
// complement.WithDeployment. Every deployment gets a loopback block of its
// own: homeserver hsN of the Kth deployment listens on 127.X.K.(N+1), port
// 8008 for the Client-Server API and 8448 for federation, where X is chosen
// once per run (MATRIXOS_COMPLEMENT_NET, or at random), so that two runs on one
// machine do not collide. Each server runs in a mount namespace of its own
// (unshare -m) whose /etc/hosts names its deployment's servers hs1, hs2, ...
//
// Environment:
//
//	MATRIXOS_COMPLEMENT_BIN   the matrixos binary (required)
//	MATRIXOS_COMPLEMENT_DIR   where the servers' data directories go (default: a new temporary directory)
//	MATRIXOS_COMPLEMENT_NET   X of the loopback block 127.X.K.*, 1 to 254 (default: a free one at random)
package matrixosrunner

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/matrix-org/complement"
	"github.com/matrix-org/complement/client"
	"github.com/matrix-org/complement/config"
	"github.com/matrix-org/complement/ct"
	"github.com/matrix-org/complement/helpers"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

const (
	clientPort = "8008"
	fedPort    = "8448"
	// sharedSecret is the registration shared secret Complement's admin
	// registration uses.
	sharedSecret = "complement"
	// defaultPassword is the password Complement's own deployments give users
	// registered without one.
	defaultPassword = "complement_meets_min_password_req"
)

// runner holds what the deployments of one test binary share.
type runner struct {
	bin  string
	dir  string
	net  int           // X of 127.X.K.*
	next atomic.Uint32 // the last deployment's K

	mu   sync.Mutex
	live map[*deployment]struct{}
}

var (
	theRunner *runner
	runnerErr error
	once      sync.Once
)

func getRunner() (*runner, error) {
	once.Do(func() { theRunner, runnerErr = newRunner() })
	return theRunner, runnerErr
}

func newRunner() (*runner, error) {
	bin := os.Getenv("MATRIXOS_COMPLEMENT_BIN")
	if bin == "" {
		return nil, errors.New("MATRIXOS_COMPLEMENT_BIN is not set (run.sh sets it)")
	}
	dir := os.Getenv("MATRIXOS_COMPLEMENT_DIR")
	if dir == "" {
		d, err := os.MkdirTemp("", "matrixos-complement-")
		if err != nil {
			return nil, err
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	r := &runner{bin: bin, dir: dir, live: map[*deployment]struct{}{}}
	if s := os.Getenv("MATRIXOS_COMPLEMENT_NET"); s != "" {
		x, err := strconv.Atoi(s)
		if err != nil || x < 1 || x > 254 {
			return nil, fmt.Errorf("MATRIXOS_COMPLEMENT_NET=%q: want 1 to 254", s)
		}
		r.net = x
		return r, nil
	}
	// A block whose first address is free is taken to be unused by another run.
	for range 64 {
		x := 1 + mrand.IntN(254)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.%d.1.2:%s", x, fedPort))
		if err == nil {
			ln.Close()
			r.net = x
			return r, nil
		}
	}
	return nil, errors.New("no free loopback block 127.X.1.2 found")
}

// Deploy starts numServers homeservers hs1, hs2, ... for a test. It is the
// function to pass to complement.WithDeployment.
func Deploy(t ct.TestLike, numServers int, cfg *config.Complement) complement.Deployment {
	t.Helper()
	r, err := getRunner()
	if err != nil {
		ct.Fatalf(t, "matrixosrunner: %s", err)
	}
	if numServers < 1 || numServers > 250 {
		ct.Fatalf(t, "matrixosrunner: %d servers asked for, want 1 to 250", numServers)
	}
	k := int(r.next.Add(1)-1)%254 + 1
	d := &deployment{
		r:    r,
		cfg:  cfg,
		name: t.Name(),
		hs:   map[string]*server{},
		transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		},
	}
	d.dir, err = os.MkdirTemp(r.dir, "deploy-"+strconv.Itoa(k)+"-")
	if err != nil {
		ct.Fatalf(t, "matrixosrunner: %s", err)
	}
	if err := d.prepare(k, numServers); err != nil {
		ct.Fatalf(t, "matrixosrunner: %s", err)
	}
	r.mu.Lock()
	r.live[d] = struct{}{}
	r.mu.Unlock()
	for i := 1; i <= numServers; i++ {
		if err := d.hs["hs"+strconv.Itoa(i)].start(cfg.SpawnHSTimeout); err != nil {
			d.kill()
			ct.Fatalf(t, "matrixosrunner: %s (logs in %s)", err, d.dir)
		}
	}
	return d
}

// Cleanup stops every server still running. It is the function to pass to
// complement.WithCleanup.
func Cleanup(*config.Complement) {
	r, err := getRunner()
	if err != nil {
		return
	}
	r.mu.Lock()
	live := make([]*deployment, 0, len(r.live))
	for d := range r.live {
		live = append(live, d)
	}
	r.mu.Unlock()
	for _, d := range live {
		d.kill()
	}
}

// deployment is one test's set of homeservers.
type deployment struct {
	r    *runner
	cfg  *config.Complement
	name string
	dir  string
	hs   map[string]*server

	// transport carries the requests of RoundTripper. The servers' certificates
	// are not checked: their names are the deployment's, not the addresses.
	transport  *http.Transport
	localparts atomic.Int64
}

// server is one matrixos process.
type server struct {
	name string
	ip   string
	dir  string
	args []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	clients []*client.CSAPI
}

// prepare writes the deployment's hosts file, certificates and CA, and the
// command line of each server.
func (d *deployment) prepare(k, n int) error {
	hosts := "127.0.0.1 localhost\n::1 localhost\n"
	for i := 1; i <= n; i++ {
		name := "hs" + strconv.Itoa(i)
		ip := fmt.Sprintf("127.%d.%d.%d", d.r.net, k, i+1)
		d.hs[name] = &server{name: name, ip: ip, dir: filepath.Join(d.dir, name)}
		hosts += ip + " " + name + "\n"
	}
	hostsFile := filepath.Join(d.dir, "hosts")
	if err := os.WriteFile(hostsFile, []byte(hosts), 0o644); err != nil {
		return err
	}
	caPEM, err := d.cfg.CACertificateBytes()
	if err != nil {
		return err
	}
	caFile := filepath.Join(d.dir, "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		return err
	}
	// mount --bind needs root: as another user, the namespace maps it to root.
	unshare := []string{"-m", "--propagation", "private"}
	if os.Geteuid() != 0 {
		unshare = append([]string{"-r"}, unshare...)
	}
	for _, s := range d.hs {
		if err := os.MkdirAll(s.dir, 0o700); err != nil {
			return err
		}
		cert, key, err := d.issue(s)
		if err != nil {
			return fmt.Errorf("certificate for %s: %w", s.name, err)
		}
		s.args = append(append([]string{}, unshare...),
			"sh", "-c", `mount --bind "$0" /etc/hosts && exec "$@"`, hostsFile,
			d.r.bin, "serve",
			"--data", filepath.Join(s.dir, "data"),
			"--server-name", s.name,
			"--listen", net.JoinHostPort(s.ip, clientPort),
			"--open-registration",
			"--registration-shared-secret", sharedSecret,
			"--default-room-version", "10",
			"--server-notices-localpart", "_server",
			"--rate-limit=false",
			"--federation",
			"--federation-listen", net.JoinHostPort(s.ip, fedPort),
			"--tls-cert", cert, "--tls-key", key,
			"--federation-ca", caFile,
			"--allow-private-networks", "127.0.0.0/8",
		)
	}
	return nil
}

// issue writes a certificate for s signed by Complement's CA, for its name and
// its address, and returns the certificate's and key's files.
func (d *deployment) issue(s *server) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: s.name},
		DNSNames:     []string{s.name},
		IPAddresses:  []net.IP{net.ParseIP(s.ip)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, d.cfg.CACertificate, &key.PublicKey, d.cfg.CAPrivateKey)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile = filepath.Join(s.dir, "tls.crt")
	keyFile = filepath.Join(s.dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

func (s *server) baseURL() string { return "http://" + net.JoinHostPort(s.ip, clientPort) }

// start runs the server and waits until its Client-Server API answers.
func (s *server) start(timeout time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("%s is already running", s.name)
	}
	logFile, err := os.OpenFile(filepath.Join(s.dir, "log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command("unshare", s.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// The server goes when the test binary does, even if it dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting %s: %w", s.name, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited

	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: time.Second}
	for {
		resp, err := hc.Get(s.baseURL() + "/_matrix/client/versions")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			s.cmd = nil
			return fmt.Errorf("%s exited while starting", s.name)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stopLocked(syscall.SIGKILL)
			return fmt.Errorf("%s did not answer within %s", s.name, timeout)
		}
	}
}

// stop ends the server with sig (SIGKILL after 10 s) and waits for it.
func (s *server) stop(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked(sig)
}

func (s *server) stopLocked(sig syscall.Signal) {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGCONT) // a paused server cannot stop
	s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

func (s *server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return fmt.Errorf("%s is not running", s.name)
	}
	return s.cmd.Process.Signal(sig)
}

func (s *server) newClient(t ct.TestLike, cfg *config.Complement, password string) *client.CSAPI {
	c := client.NewCSAPI(client.CSAPIOpts{
		BaseURL:          s.baseURL(),
		Client:           client.NewLoggedClient(t, s.name, nil),
		SyncUntilTimeout: 5 * time.Second,
		Debug:            cfg.DebugLoggingEnabled,
		Password:         password,
	})
	s.mu.Lock()
	s.clients = append(s.clients, c)
	s.mu.Unlock()
	return c
}

func (d *deployment) server(t ct.TestLike, hsName string) *server {
	t.Helper()
	s, ok := d.hs[hsName]
	if !ok {
		ct.Fatalf(t, "matrixosrunner: no homeserver %q in this deployment", hsName)
	}
	return s
}

// kill ends every server at once and forgets the deployment.
func (d *deployment) kill() {
	var wg sync.WaitGroup
	for _, s := range d.hs {
		wg.Go(func() { s.stop(syscall.SIGKILL) })
	}
	wg.Wait()
	d.transport.CloseIdleConnections()
	d.r.mu.Lock()
	delete(d.r.live, d)
	d.r.mu.Unlock()
}

func (d *deployment) GetFullyQualifiedHomeserverName(t ct.TestLike, hsName string) spec.ServerName {
	t.Helper()
	return spec.ServerName(d.server(t, hsName).name)
}

func (d *deployment) UnauthenticatedClient(t ct.TestLike, hsName string) *client.CSAPI {
	t.Helper()
	return d.server(t, hsName).newClient(t, d.cfg, "")
}

func (d *deployment) Register(t ct.TestLike, hsName string, opts helpers.RegistrationOpts) *client.CSAPI {
	t.Helper()
	password := opts.Password
	if password == "" {
		password = defaultPassword
	}
	c := d.server(t, hsName).newClient(t, d.cfg, password)
	localpart := "user-" + strconv.FormatInt(d.localparts.Add(1), 10)
	if opts.LocalpartSuffix != "" {
		localpart += "-" + opts.LocalpartSuffix
	}
	if opts.IsAdmin {
		c.UserID, c.AccessToken, c.DeviceID = c.RegisterSharedSecret(t, localpart, password, true)
	} else {
		c.UserID, c.AccessToken, c.DeviceID = c.RegisterUser(t, localpart, password)
	}
	return c
}

func (d *deployment) Login(t ct.TestLike, hsName string, existing *client.CSAPI, opts helpers.LoginOpts) *client.CSAPI {
	t.Helper()
	localpart, _, ok := strings.Cut(strings.TrimPrefix(existing.UserID, "@"), ":")
	if !ok {
		ct.Fatalf(t, "matrixosrunner: Login: %q is not a user ID", existing.UserID)
	}
	password := existing.Password
	if opts.Password != "" {
		password = opts.Password
	}
	c := d.server(t, hsName).newClient(t, d.cfg, password)
	var with []client.LoginOpt
	if opts.DeviceID != "" {
		with = append(with, client.WithDeviceID(opts.DeviceID))
	}
	c.UserID, c.AccessToken, c.DeviceID = c.LoginUser(t, localpart, password, with...)
	return c
}

func (d *deployment) AppServiceUser(t ct.TestLike, hsName, appServiceUserID string) *client.CSAPI {
	t.Helper()
	ct.Fatalf(t, "matrixosrunner: application services are not set up by this deployment")
	return nil
}

func (d *deployment) Restart(t ct.TestLike) error {
	t.Helper()
	for _, s := range d.hs {
		s.stop(syscall.SIGTERM)
	}
	for _, s := range d.hs {
		if err := s.start(d.cfg.SpawnHSTimeout); err != nil {
			t.Errorf("matrixosrunner: Restart: %s", err)
			return err
		}
	}
	return nil
}

func (d *deployment) StopServer(t ct.TestLike, hsName string) {
	t.Helper()
	d.server(t, hsName).stop(syscall.SIGTERM)
}

func (d *deployment) StartServer(t ct.TestLike, hsName string) {
	t.Helper()
	if err := d.server(t, hsName).start(d.cfg.SpawnHSTimeout); err != nil {
		ct.Fatalf(t, "matrixosrunner: StartServer: %s", err)
	}
}

func (d *deployment) PauseServer(t ct.TestLike, hsName string) {
	t.Helper()
	if err := d.server(t, hsName).signal(syscall.SIGSTOP); err != nil {
		ct.Fatalf(t, "matrixosrunner: PauseServer: %s", err)
	}
}

func (d *deployment) UnpauseServer(t ct.TestLike, hsName string) {
	t.Helper()
	if err := d.server(t, hsName).signal(syscall.SIGCONT); err != nil {
		ct.Fatalf(t, "matrixosrunner: UnpauseServer: %s", err)
	}
}

// ContainerID returns the server's process ID: there are no containers.
func (d *deployment) ContainerID(t ct.TestLike, hsName string) string {
	t.Helper()
	s := d.server(t, hsName)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return ""
	}
	return strconv.Itoa(s.cmd.Process.Pid)
}

// Destroy stops the servers. The data and logs of a failed test's servers are
// kept and their directory logged; those of a passing test are removed.
func (d *deployment) Destroy(t ct.TestLike) {
	t.Helper()
	d.kill()
	if t.Failed() || d.cfg.AlwaysPrintServerLogs {
		t.Logf("matrixosrunner: the servers' data and logs (hsN/log) are in %s", d.dir)
		return
	}
	os.RemoveAll(d.dir)
}

func (d *deployment) GetConfig() *config.Complement { return d.cfg }

func (d *deployment) Network() string { return "" }

// RoundTripper sends Complement's federation requests: to hsN's federation
// listener, or to Complement's own servers on loopback.
func (d *deployment) RoundTripper() http.RoundTripper { return roundTripper{d} }

type roundTripper struct{ d *deployment }

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Hostname()
	u := *req.URL
	u.Scheme = "https"
	if host == rt.d.cfg.HostnameRunningComplement {
		u.Host = "127.0.0.1"
		if port := req.URL.Port(); port != "" {
			u.Host = net.JoinHostPort(u.Host, port)
		}
	} else if s, ok := rt.d.hs[host]; ok {
		u.Host = net.JoinHostPort(s.ip, fedPort)
	} else {
		return nil, fmt.Errorf("matrixosrunner: unknown server %q", host)
	}
	req = req.Clone(req.Context())
	req.URL = &u
	return rt.d.transport.RoundTrip(req)
}

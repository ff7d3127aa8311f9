package testnode

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/matrixos/matrixos/internal/config"
)

// CA is a certificate authority a test creates to issue the federation
// listeners' certificates; nodes trust it through federation_ca.
type CA struct {
	// File is the CA certificate, PEM.
	File string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
}

// NewCA creates a CA valid for the test.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Matrix OS test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{cert: cert, key: key, dir: t.TempDir()}
	ca.File = filepath.Join(ca.dir, "ca.pem")
	writePEM(t, ca.File, "CERTIFICATE", der)
	return ca
}

// Issue returns the files of a certificate and its key for the hosts (IP
// addresses or DNS names), signed by the CA.
func (ca *CA) Issue(t testing.TB, hosts ...string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(ca.dir, serial.String()+".crt")
	keyFile = filepath.Join(ca.dir, serial.String()+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// StartFederating starts a node (as Start does) that other test nodes
// reach over federation on loopback: its server name is 127.0.0.1:PORT,
// its federation listener serves HTTPS on that port with a certificate
// from ca, it trusts ca for outbound federation and may reach loopback
// addresses. opts apply after these settings.
func StartFederating(t testing.TB, engine Engine, ca *CA, opts ...Option) *Node {
	t.Helper()
	// The listener is opened first so that its port, part of the server
	// name, is known and cannot be taken by anyone else meanwhile.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() }) // in case the node never takes it
	certFile, keyFile := ca.Issue(t, "127.0.0.1", "localhost")
	addr := ln.Addr().String()
	federating := func(c *config.Config) {
		c.Federation = true
		c.ServerName = addr
		c.FederationListen = addr
		c.TLSCert, c.TLSKey = certFile, keyFile
		c.FederationCA = ca.File
		c.AllowPrivateNetworks = []string{"127.0.0.0/8", "::1/128"}
	}
	cfg := testConfig(t, engine, append([]Option{federating}, opts...)...)
	return startConfig(t, cfg, ln)
}

// FederationURL is the node's federation listener's base URL.
func (n *Node) FederationURL() string { return "https://" + n.FederationAddr }

// FederationDo is Do for the node's federation listener, over HTTPS that
// trusts the node's federation_ca; opts can add an Authorization header.
func (n *Node) FederationDo(t testing.TB, method, path string, body any, opts ...RequestOption) *Response {
	t.Helper()
	return send(t, n.FederationClient(t), n.FederationURL(), method, path, "", body, opts)
}

// FederationClient is an HTTP client that trusts the node's federation_ca.
func (n *Node) FederationClient(t testing.TB) *http.Client {
	t.Helper()
	pool, err := config.LoadCertPool(n.Config.FederationCA)
	if err != nil {
		t.Fatalf("federation CA: %v", err)
	}
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
}

package federation

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"maunium.net/go/mautrix/federation"

	"github.com/matrixos/matrixos/internal/netguard"
)

// stubDNS answers A and SRV queries from fixed tables over UDP on
// loopback; every other name is NXDOMAIN.
type stubDNS struct {
	a   map[string]net.IP
	srv map[string][]net.SRV
}

func (d *stubDNS) serve(t *testing.T) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp, err := d.answer(buf[:n]); err == nil {
				pc.WriteTo(resp, from)
			}
		}
	}()
	addr := pc.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dialer net.Dialer
		return dialer.DialContext(ctx, "udp", addr)
	}}
}

func (d *stubDNS) answer(query []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	name := strings.ToLower(q.Name.String())
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
	b.EnableCompression()
	rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
	ip, hasA := d.a[name]
	srvs, hasSRV := d.srv[name]
	if !hasA && !hasSRV {
		b = dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RCode: dnsmessage.RCodeNameError})
	}
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	b.Question(q)
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	switch {
	case q.Type == dnsmessage.TypeA && hasA:
		var a [4]byte
		copy(a[:], ip.To4())
		b.AResource(rh, dnsmessage.AResource{A: a})
	case q.Type == dnsmessage.TypeSRV && hasSRV:
		for _, s := range srvs {
			target := dnsmessage.MustNewName(s.Target)
			b.SRVResource(rh, dnsmessage.SRVResource{Priority: s.Priority, Weight: s.Weight, Port: s.Port, Target: target})
		}
	}
	return b.Finish()
}

// certFor returns a self-signed certificate for the names.
func certFor(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestDiscovery follows the spec's server name resolution with a stub DNS
// server and a stub HTTPS server that answers /version with the Host
// header it got: explicit ports, .well-known delegation, SRV
// _matrix-fed._tcp (trying every target), the legacy _matrix._tcp, and
// port 8448 when nothing else applies.
func TestDiscovery(t *testing.T) {
	names := []string{"b.test", "wk.test", "srv.test", "legacy.test"}
	cert := certFor(t, names...)
	var delegate string // what wk.test's .well-known names
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/.well-known/matrix/server" {
			w.Write([]byte(`{"m.server": "` + delegate + `"}`))
			return
		}
		w.Write([]byte(`{"server":{"name":"` + r.Host + `","version":"1"}}`))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()
	_, portStr, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portStr)
	closed := closedPort(t)
	_, closedStr, _ := net.SplitHostPort(closed)
	closedPortN, _ := strconv.Atoi(closedStr)

	dns := &stubDNS{
		a: map[string]net.IP{"a.test.": net.IPv4(127, 0, 0, 1), "b.test.": net.IPv4(127, 0, 0, 1), "wk.test.": net.IPv4(127, 0, 0, 1), "plain.test.": net.IPv4(127, 0, 0, 1)},
		srv: map[string][]net.SRV{
			"_matrix-fed._tcp.srv.test.": {{Target: "a.test.", Port: uint16(closedPortN), Priority: 1}, {Target: "b.test.", Port: uint16(port), Priority: 2}},
			"_matrix._tcp.legacy.test.":  {{Target: "b.test.", Port: uint16(port), Priority: 1}},
		},
	}
	resolver := dns.serve(t)
	guard, err := netguard.New([]string{"127.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	guard.Resolver = resolver
	roots := x509.NewCertPool()
	roots.AddCert(mustParse(t, cert.Certificate[0]))
	tr := newTransport(guard, roots, resolver)
	// .well-known is fetched from port 443 of the name; send it to the stub.
	wk := tr.wellKnown.Transport.(*http.Transport)
	wk.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == "wk.test:443" {
			addr = "wk.test:" + portStr
		}
		return guard.DialContext(ctx, network, addr)
	}
	delegate = "b.test:" + portStr
	client := newClient("me.test", federation.GenerateSigningKey(), tr, "test")

	for _, tc := range []struct{ name, wantHost string }{
		{"b.test:" + portStr, "b.test:" + portStr}, // explicit port: A record
		{"wk.test", "b.test:" + portStr},           // .well-known delegation
		{"srv.test", "srv.test"},                   // SRV _matrix-fed, second target
		{"legacy.test", "legacy.test"},             // SRV _matrix
	} {
		resp, err := client.Version(context.Background(), tc.name)
		if err != nil || resp.Server.Name != tc.wantHost {
			t.Errorf("%s: %+v, %v; want Host %s", tc.name, resp, err, tc.wantHost)
		}
	}
	// Nothing published: port 8448 of the name.
	if _, err := client.Version(context.Background(), "plain.test"); err == nil || !strings.Contains(err.Error(), "plain.test:8448") {
		t.Errorf("plain.test: %v, want a try of port 8448", err)
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

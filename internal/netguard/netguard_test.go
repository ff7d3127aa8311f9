package netguard_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/matrixos/matrixos/internal/netguard"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		addr string
		want netguard.Class
	}{
		{"8.8.8.8", netguard.Public},
		{"1.1.1.1", netguard.Public},
		{"2606:4700:4700::1111", netguard.Public},
		{"2001:4860:4860::8888", netguard.Public},
		{"0.0.0.0", netguard.Unspecified},
		{"::", netguard.Unspecified},
		{"127.0.0.1", netguard.Loopback},
		{"127.255.255.254", netguard.Loopback},
		{"::1", netguard.Loopback},
		{"::ffff:127.0.0.1", netguard.Loopback},
		{"10.1.2.3", netguard.Private},
		{"172.16.0.1", netguard.Private},
		{"172.31.255.255", netguard.Private},
		{"192.168.1.1", netguard.Private},
		{"::ffff:10.0.0.1", netguard.Private},
		{"100.64.0.1", netguard.SharedCGNAT},
		{"100.127.255.255", netguard.SharedCGNAT},
		{"169.254.1.1", netguard.LinkLocal},
		{"fe80::1", netguard.LinkLocal},
		{"fe80::1%eth0", netguard.LinkLocal},
		{"169.254.169.254", netguard.Metadata},
		{"fd00:ec2::254", netguard.Metadata},
		{"224.0.0.1", netguard.Multicast},
		{"239.255.255.250", netguard.Multicast},
		{"ff02::1", netguard.Multicast},
		{"255.255.255.255", netguard.Broadcast},
		{"240.0.0.1", netguard.Reserved},
		{"192.0.2.1", netguard.Documentation},
		{"2001:db8::1", netguard.Documentation},
		{"198.18.0.1", netguard.Benchmarking},
		{"fd12:3456::1", netguard.UniqueLocal},
		{"fc00::1", netguard.UniqueLocal},
		{"64:ff9b::7f00:1", netguard.Loopback},    // NAT64 of 127.0.0.1
		{"64:ff9b::a9fe:a9fe", netguard.Metadata}, // NAT64 of 169.254.169.254
		{"64:ff9b::808:808", netguard.Public},     // NAT64 of 8.8.8.8
		{"2002:7f00:1::1", netguard.Loopback},     // 6to4 of 127.0.0.1
		{"2001::1", netguard.Translation},         // Teredo
		{"::127.0.0.1", netguard.Reserved},        // IPv4-compatible
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			if got := netguard.Classify(netip.MustParseAddr(tt.addr)); got != tt.want {
				t.Errorf("Classify(%s) = %q, want %q", tt.addr, got, tt.want)
			}
		})
	}
}

func TestGuardAllowList(t *testing.T) {
	g, err := netguard.New([]string{"127.0.0.0/8", "fd00::/8", "10.1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1", true},
		{"::ffff:127.0.0.1", true},
		{"10.1.2.3", true},
		{"10.1.2.4", false},
		{"fd00:ec2::254", true},
		{"::1", false},
		{"169.254.169.254", false},
		{"8.8.8.8", true},
	}
	for _, tt := range tests {
		err := g.Check(netip.MustParseAddr(tt.addr))
		if (err == nil) != tt.ok {
			t.Errorf("Check(%s) = %v, want ok=%v", tt.addr, err, tt.ok)
		}
		if err != nil && !errors.Is(err, netguard.ErrForbidden) {
			t.Errorf("Check(%s) error %v does not wrap ErrForbidden", tt.addr, err)
		}
	}
	if _, err := netguard.New([]string{"not-a-cidr"}); err == nil {
		t.Error("New accepted a bad range")
	}
}

// fakeResolver answers every name with fixed addresses.
type fakeResolver map[string][]string

func (f fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range f[host] {
		out = append(out, netip.MustParseAddr(s))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no such host %s", host)
	}
	return out, nil
}

func TestResolveRefusesAnyForbiddenAnswer(t *testing.T) {
	g := &netguard.Guard{Resolver: fakeResolver{
		"public.example":    {"93.184.216.34"},
		"rebind.example":    {"93.184.216.34", "127.0.0.1"},
		"metadata.example":  {"169.254.169.254"},
		"ula.example":       {"fd00:ec2::254"},
		"cgnat.example":     {"100.64.1.1"},
		"multicast.example": {"224.0.0.251"},
	}}
	ctx := context.Background()
	if _, err := g.Resolve(ctx, "public.example"); err != nil {
		t.Errorf("public.example refused: %v", err)
	}
	for _, host := range []string{"rebind.example", "metadata.example", "ula.example", "cgnat.example", "multicast.example", "127.0.0.1", "[::1]", "0.0.0.0"} {
		if _, err := g.Resolve(ctx, host); !errors.Is(err, netguard.ErrForbidden) {
			t.Errorf("Resolve(%s) = %v, want ErrForbidden", host, err)
		}
	}
}

func TestClientRefusesLoopbackAndRedirects(t *testing.T) {
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		io.WriteString(w, "secret")
	}))
	defer srv.Close()

	// By default the loopback server must not be reached at all.
	c := (&netguard.Guard{}).Client(netguard.ClientOptions{})
	for _, u := range []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)} {
		resp, err := c.Get(u)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("GET %s succeeded; want refusal", u)
		}
		if !errors.Is(err, netguard.ErrForbidden) {
			t.Errorf("GET %s: %v, want ErrForbidden", u, err)
		}
	}
	if hits != 0 {
		t.Fatalf("loopback server was reached %d times", hits)
	}

	// Allowed, it works; a redirect to a forbidden address is refused; a
	// redirect to another scheme is refused; redirect loops stop.
	g, _ := netguard.New([]string{"127.0.0.0/8"})
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/to-metadata", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
	})
	mux.HandleFunc("/to-file", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	srv2 := httptest.NewServer(mux)
	defer srv2.Close()
	c = g.Client(netguard.ClientOptions{})
	resp, err := c.Get(srv2.URL + "/ok")
	if err != nil {
		t.Fatalf("allowed GET: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" {
		t.Errorf("body %q", b)
	}
	if _, err := c.Get(srv2.URL + "/to-metadata"); !errors.Is(err, netguard.ErrForbidden) {
		t.Errorf("redirect to metadata: %v, want ErrForbidden", err)
	}
	if _, err := c.Get(srv2.URL + "/to-file"); !errors.Is(err, netguard.ErrScheme) {
		t.Errorf("redirect to file: %v, want ErrScheme", err)
	}
	if _, err := c.Get(srv2.URL + "/loop"); err == nil || !strings.Contains(err.Error(), "redirects") {
		t.Errorf("redirect loop: %v", err)
	}
}

func TestResolveNumericHosts(t *testing.T) {
	g := &netguard.Guard{Resolver: fakeResolver{"cafe.de": {"93.184.216.34"}, "1e100.net": {"142.250.0.1"}}}
	for _, host := range []string{"127.1", "0x7f.0.0.1", "0177.0.0.1", "2130706433", "0x7f000001", "10.1", "169.254.43518", "127.0.0.1.", "256.1.1.1", "1.2.3.4.5"} {
		if _, err := g.Resolve(context.Background(), host); !errors.Is(err, netguard.ErrForbidden) {
			t.Errorf("Resolve(%s) = %v, want ErrForbidden", host, err)
		}
	}
	for _, host := range []string{"cafe.de", "1e100.net", "8.8.8.8", "134744072"} {
		if _, err := g.Resolve(context.Background(), host); err != nil {
			t.Errorf("Resolve(%s) = %v", host, err)
		}
	}
}

package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrForbidden is wrapped by every error that refuses an address.
var ErrForbidden = errors.New("destination address is not allowed")

// AddrError reports a refused address.
type AddrError struct {
	Host  string // the name asked for, if any
	Addr  netip.Addr
	Class Class
}

func (e *AddrError) Error() string {
	if e.Host != "" && e.Host != e.Addr.String() {
		return fmt.Sprintf("%s resolves to %s, a %s address, which outbound requests may not reach", e.Host, e.Addr, e.Class)
	}
	return fmt.Sprintf("%s is a %s address, which outbound requests may not reach", e.Addr, e.Class)
}

// Unwrap makes errors.Is(err, ErrForbidden) true.
func (e *AddrError) Unwrap() error { return ErrForbidden }

// Resolver looks up a host's addresses; *net.Resolver has the method.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Guard decides which addresses outbound requests may reach and dials only
// those. The zero Guard refuses every special-purpose address and uses the
// system resolver.
type Guard struct {
	// Allow lists ranges that may be reached although special (an
	// operator's choice, such as a push gateway on the local network).
	Allow []netip.Prefix
	// Resolver resolves host names; nil uses net.DefaultResolver.
	Resolver Resolver
	// Dialer dials vetted addresses; nil uses a dialer with a 10s timeout.
	Dialer *net.Dialer
}

// New returns a Guard that allows the given CIDR ranges (single addresses
// are taken as /32 or /128).
func New(allow []string) (*Guard, error) {
	g := &Guard{}
	for _, s := range allow {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("allowed network %q: %w", s, err)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		g.Allow = append(g.Allow, p.Masked())
	}
	return g, nil
}

// Check returns nil if addr may be reached, or an *AddrError.
func (g *Guard) Check(addr netip.Addr) error {
	addr = addr.WithZone("")
	class := Classify(addr)
	if class == Public {
		return nil
	}
	for _, p := range g.Allow {
		if p.Contains(addr) || (addr.Is4In6() && p.Contains(addr.Unmap())) {
			return nil
		}
	}
	return &AddrError{Addr: addr, Class: class}
}

// Resolve looks host up and returns its addresses, or an error wrapping
// ErrForbidden if any of them may not be reached: a name that points at
// both a public and a private address is refused as a whole.
func (g *Guard) Resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	host = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(host, "]"), "["), ".")
	if host == "" {
		return nil, errors.New("empty host")
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if err := g.Check(a); err != nil {
			return nil, err
		}
		return []netip.Addr{a.WithZone("")}, nil
	}
	if a, numeric := parseLegacyIPv4(host); numeric {
		// 127.1, 0x7f.0.0.1, 2130706433: what browsers and inet_aton read
		// as IPv4 addresses is checked as one, never handed to DNS.
		if !a.IsValid() {
			return nil, &AddrError{Host: host, Class: Invalid}
		}
		if err := g.Check(a); err != nil {
			ae := err.(*AddrError)
			ae.Host = host
			return nil, ae
		}
		return []netip.Addr{a}, nil
	}
	var r Resolver = net.DefaultResolver
	if g.Resolver != nil {
		r = g.Resolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("resolve %s: no addresses", host)
	}
	for _, a := range addrs {
		if err := g.Check(a); err != nil {
			ae := err.(*AddrError)
			ae.Host = host
			return nil, ae
		}
	}
	return addrs, nil
}

// DialContext resolves the address's host, vets every address, and dials
// the vetted ones in turn. It has the signature of
// http.Transport.DialContext.
func (g *Guard) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("netguard: network %q not supported", network)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	addrs, err := g.Resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	d := g.dialer()
	var errs []error
	for _, a := range addrs {
		if network == "tcp4" && !a.Unmap().Is4() || network == "tcp6" && !a.Is6() {
			continue
		}
		conn, err := d.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("dial %s: no %s address", host, network)
	}
	return nil, errors.Join(errs...)
}

// dialer returns a copy of the configured dialer that re-checks the
// address each socket actually connects to, as a second line of defence.
func (g *Guard) dialer() *net.Dialer {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if g.Dialer != nil {
		c := *g.Dialer
		d = &c
	}
	inner := d.Control
	d.Control = func(network, address string, c syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("netguard: unexpected dial address %q: %w", address, err)
		}
		if err := g.Check(ap.Addr()); err != nil {
			return err
		}
		if inner != nil {
			return inner(network, address, c)
		}
		return nil
	}
	d.ControlContext = nil
	return d
}

// parseLegacyIPv4 reads host as the URL standard's IPv4 parser does: when
// its last label is a number, the host is an IPv4 address of one to four
// decimal, octal (0...) or hex (0x...) parts. numeric is false for host
// names; an invalid numeric host returns an invalid address.
func parseLegacyIPv4(host string) (addr netip.Addr, numeric bool) {
	labels := strings.Split(strings.TrimSuffix(host, "."), ".")
	if _, ok := parseIPv4Part(labels[len(labels)-1]); !ok {
		return netip.Addr{}, false
	}
	if len(labels) > 4 {
		return netip.Addr{}, true
	}
	var parts []uint64
	for _, l := range labels {
		v, ok := parseIPv4Part(l)
		if !ok {
			return netip.Addr{}, true
		}
		parts = append(parts, v)
	}
	last := parts[len(parts)-1]
	if last >= 1<<(8*(5-len(parts))) {
		return netip.Addr{}, true
	}
	v := last
	for i, p := range parts[:len(parts)-1] {
		if p > 255 {
			return netip.Addr{}, true
		}
		v |= p << (8 * (3 - i))
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

func parseIPv4Part(s string) (uint64, bool) {
	base := 10
	switch {
	case s == "":
		return 0, false
	case strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X"):
		base, s = 16, s[2:]
		if s == "" {
			return 0, true
		}
	case len(s) > 1 && s[0] == '0':
		base, s = 8, s[1:]
	}
	v, err := strconv.ParseUint(s, base, 32)
	if err != nil {
		return 0, false
	}
	return v, true
}

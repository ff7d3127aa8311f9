package netguard

import (
	"net/netip"
)

// Class names why an address is not a public unicast address. The empty
// class is a public address.
type Class string

// The address classes that outbound requests refuse by default.
const (
	Public        Class = ""
	Unspecified   Class = "unspecified"
	Loopback      Class = "loopback"
	Private       Class = "private"
	SharedCGNAT   Class = "shared address space (CGNAT)"
	LinkLocal     Class = "link-local"
	Metadata      Class = "cloud metadata"
	Multicast     Class = "multicast"
	Broadcast     Class = "broadcast"
	Documentation Class = "documentation"
	Benchmarking  Class = "benchmarking"
	Reserved      Class = "reserved"
	Translation   Class = "IPv4 translation"
	UniqueLocal   Class = "unique local"
	Invalid       Class = "invalid"
)

type special struct {
	prefix netip.Prefix
	class  Class
}

// specials lists the special-purpose ranges (IANA IPv4 and IPv6
// special-purpose address registries, plus cloud metadata endpoints). More
// specific prefixes come first: the first match decides the class.
var specials = func() []special {
	rows := []struct {
		cidr  string
		class Class
	}{
		// Cloud metadata endpoints (AWS, GCP, Azure, OpenStack; AWS IPv6).
		{"169.254.169.254/32", Metadata},
		{"169.254.170.2/32", Metadata}, // ECS task metadata
		{"fd00:ec2::254/128", Metadata},

		// IPv4.
		{"0.0.0.0/8", Unspecified},
		{"10.0.0.0/8", Private},
		{"100.64.0.0/10", SharedCGNAT},
		{"127.0.0.0/8", Loopback},
		{"169.254.0.0/16", LinkLocal},
		{"172.16.0.0/12", Private},
		{"192.0.0.0/24", Reserved}, // IETF protocol assignments
		{"192.0.2.0/24", Documentation},
		{"192.31.196.0/24", Reserved}, // AS112
		{"192.52.193.0/24", Reserved}, // AMT
		{"192.88.99.0/24", Reserved},  // 6to4 relay anycast
		{"192.168.0.0/16", Private},
		{"192.175.48.0/24", Reserved}, // AS112 direct delegation
		{"198.18.0.0/15", Benchmarking},
		{"198.51.100.0/24", Documentation},
		{"203.0.113.0/24", Documentation},
		{"224.0.0.0/4", Multicast},
		{"255.255.255.255/32", Broadcast},
		{"240.0.0.0/4", Reserved},

		// IPv6. IPv4-mapped, NAT64 and 6to4 addresses are checked by the
		// IPv4 address they carry (see Classify).
		{"::/128", Unspecified},
		{"::1/128", Loopback},
		{"::/96", Reserved},             // IPv4-compatible (deprecated)
		{"64:ff9b:1::/48", Translation}, // local-use NAT64
		{"100::/64", Reserved},          // discard-only
		{"2001::/32", Translation},      // Teredo
		{"2001:db8::/32", Documentation},
		{"2001::/23", Reserved}, // IETF protocol assignments
		{"3fff::/20", Documentation},
		{"5f00::/16", Reserved}, // SRv6 SIDs
		{"fc00::/7", UniqueLocal},
		{"fe80::/10", LinkLocal},
		{"fec0::/10", Reserved}, // site-local (deprecated)
		{"ff00::/8", Multicast},
	}
	out := make([]special, len(rows))
	for i, r := range rows {
		out[i] = special{netip.MustParsePrefix(r.cidr), r.class}
	}
	return out
}()

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// Classify returns the class of addr: Public for a global unicast address,
// otherwise the reason it is special. IPv6 addresses that embed an IPv4
// address (IPv4-mapped, NAT64, 6to4) are classified by that IPv4 address.
func Classify(addr netip.Addr) Class {
	if !addr.IsValid() {
		return Invalid
	}
	addr = addr.WithZone("")
	if v4, ok := embeddedIPv4(addr); ok {
		return Classify(v4)
	}
	for _, s := range specials {
		if s.prefix.Contains(addr) {
			return s.class
		}
	}
	return Public
}

// embeddedIPv4 returns the IPv4 address that an IPv4-mapped, NAT64 or 6to4
// IPv6 address routes to.
func embeddedIPv4(addr netip.Addr) (netip.Addr, bool) {
	if addr.Is4In6() {
		return addr.Unmap(), true
	}
	if !addr.Is6() {
		return netip.Addr{}, false
	}
	b := addr.As16()
	switch {
	case nat64.Contains(addr):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(addr):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

package dispatcher

import (
	"fmt"
	"net/netip"
	"syscall"
)

// SSRFError is returned (wrapped) when the guard refuses to connect to an
// address. It travels through net.OpError and url.Error, so Classify finds
// it with errors.As and the call is Rejected with reason "ssrf".
type SSRFError struct {
	// Addr is the resolved address the dialer was about to connect to.
	Addr netip.Addr
	// Class says why it is refused: loopback, private, link-local, metadata, ...
	Class string
}

func (e *SSRFError) Error() string {
	return fmt.Sprintf("ssrf guard refused %s address %s "+
		"(set dispatch.allow_private_networks or add it to dispatch.allow_cidrs to allow it)", e.Class, e.Addr)
}

// blockedRange is one non-public range and why it is refused.
type blockedRange struct {
	prefix netip.Prefix
	class  string
}

// metadataAddrs are cloud instance-metadata endpoints. They are refused even
// when a broader AllowCIDRs prefix covers them (opening 169.254.0.0/16 for a
// link-local appliance must not hand out cloud credentials); only an exact
// single-address entry or AllowPrivateNetworks opens them.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"), // AWS, GCP, Azure, OpenStack, Oracle
	netip.MustParseAddr("169.254.170.2"),   // AWS ECS task metadata
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
	netip.MustParseAddr("fd00:ec2::254"),   // AWS IMDS over IPv6
}

// blockedRanges is an immutable table of everything that is not a public
// unicast destination. The first match names the class.
var blockedRanges = func() []blockedRange {
	t := []struct{ cidr, class string }{
		// IPv4
		{"0.0.0.0/8", "unspecified"},
		{"10.0.0.0/8", "private"},
		{"100.64.0.0/10", "carrier-grade NAT"},
		{"127.0.0.0/8", "loopback"},
		{"169.254.0.0/16", "link-local"},
		{"172.16.0.0/12", "private"},
		{"192.0.0.0/24", "reserved"},
		{"192.0.2.0/24", "reserved"},
		{"192.168.0.0/16", "private"},
		{"198.18.0.0/15", "reserved"},
		{"198.51.100.0/24", "reserved"},
		{"203.0.113.0/24", "reserved"},
		{"224.0.0.0/4", "multicast"},
		{"240.0.0.0/4", "reserved"}, // includes 255.255.255.255 broadcast
		// IPv6 (IPv4-mapped ::ffff:0:0/96 is unmapped before lookup)
		{"::/128", "unspecified"},
		{"::1/128", "loopback"},
		{"::/96", "reserved"}, // deprecated IPv4-compatible
		{"64:ff9b:1::/48", "reserved"},
		{"100::/64", "reserved"},
		{"2001:db8::/32", "reserved"},
		{"fc00::/7", "private"},
		{"fe80::/10", "link-local"},
		{"fec0::/10", "private"}, // deprecated site-local
		{"ff00::/8", "multicast"},
	}
	out := make([]blockedRange, len(t))
	for i, r := range t {
		out[i] = blockedRange{netip.MustParsePrefix(r.cidr), r.class}
	}
	return out
}()

var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96") // embeds an IPv4 address in the last 32 bits
	sixToFour   = netip.MustParsePrefix("2002::/16")    // embeds an IPv4 address in bits 16..47
)

// guard decides which resolved addresses the dialer may connect to.
type guard struct {
	allowAll bool
	allow    []netip.Prefix
}

// control is a net.Dialer Control func. It runs after DNS resolution with
// the literal address about to be connected, for every connection including
// redirects and TLS, so a name that resolves (or re-resolves, DNS
// rebinding) to an internal address is refused before any packet is sent.
func (g *guard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &SSRFError{Class: "unparseable"}
	}
	return g.check(ap.Addr())
}

// check returns an *SSRFError when ip may not be reached.
func (g *guard) check(ip netip.Addr) error {
	if g.allowAll {
		return nil
	}
	ip = ip.WithZone("").Unmap()
	class := classifyAddr(ip)
	if class == "" {
		return nil
	}
	for _, p := range g.allow {
		if !p.Contains(ip) {
			continue
		}
		if class == "metadata" && !p.IsSingleIP() {
			continue
		}
		return nil
	}
	return &SSRFError{Addr: ip, Class: class}
}

// classifyAddr returns "" for a public unicast address, else its class.
// Addresses that embed an IPv4 address (NAT64, 6to4) are judged by it.
func classifyAddr(ip netip.Addr) string {
	if !ip.IsValid() {
		return "invalid"
	}
	for _, m := range metadataAddrs {
		if ip == m {
			return "metadata"
		}
	}
	for _, r := range blockedRanges {
		if r.prefix.Contains(ip) {
			return r.class
		}
	}
	if ip.Is6() {
		b := ip.As16()
		var v4 [4]byte
		switch {
		case nat64Prefix.Contains(ip):
			copy(v4[:], b[12:16])
		case sixToFour.Contains(ip):
			copy(v4[:], b[2:6])
		default:
			return ""
		}
		if c := classifyAddr(netip.AddrFrom4(v4)); c != "" {
			return c + " (embedded in IPv6)"
		}
	}
	return ""
}

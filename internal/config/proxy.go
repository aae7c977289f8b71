package config

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/sftpgate/sftpgate/sftpd"
)

// proxyProtocol reads the keys proxyProtocol ("off", "optional" or
// "required") and proxyTrusted (a list of CIDRs or bare addresses, the load
// balancers allowed to send a PROXY header). A mode other than "off" with
// no trusted address is a problem of proxyTrusted.
func (p *parser) proxyProtocol(mode *sftpd.ProxyMode, trusted *[]netip.Prefix) {
	if raw, ok := p.get("proxyProtocol"); ok {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			p.wrongType("proxyProtocol", `string ("off", "optional" or "required")`, raw)
		} else if m, err := sftpd.ParseProxyMode(s); err != nil {
			p.problem("proxyProtocol", err.Error())
		} else {
			*mode = m
		}
	}
	if raw, ok := p.get("proxyTrusted"); ok {
		var list []string
		if err := json.Unmarshal(raw, &list); err != nil {
			p.wrongType("proxyTrusted", `array of CIDRs (e.g. ["10.0.0.5/32"])`, raw)
		} else {
			out := make([]netip.Prefix, 0, len(list))
			for _, s := range list {
				pfx, err := parseTrustedPrefix(s)
				if err != nil {
					p.problem("proxyTrusted", err.Error())
					return
				}
				out = append(out, pfx)
			}
			*trusted = out
		}
	}
	if *mode != sftpd.ProxyOff && len(*trusted) == 0 {
		p.problem("proxyTrusted", fmt.Sprintf("mandatory when proxyProtocol is %q: the load balancers' addresses (CIDRs)", mode.String()))
	}
}

// parseTrustedPrefix parses a CIDR ("10.0.0.0/24") or a bare address
// (one host).
func parseTrustedPrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR or an IP address", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR or an IP address", s)
	}
	if pfx.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q: write IPv4 CIDRs as IPv4", s)
	}
	return pfx.Masked(), nil
}

// proxyTrustedStrings returns the trusted prefixes as strings, for
// printing.
func proxyTrustedStrings(list []netip.Prefix) []string {
	out := make([]string, len(list))
	for i, p := range list {
		out[i] = p.String()
	}
	return out
}

package config

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/sftpgate/sftpgate/sftpd"
)

func TestConfigProxyProtocol(t *testing.T) {
	const s = `services."pydio.gateway.sftp".`
	for _, tt := range []struct {
		name        string
		body        string
		wantMode    sftpd.ProxyMode
		wantTrusted []netip.Prefix
		wantErr     []string // substrings of the error; nil: valid
	}{
		{"default off", `"port": 2022`, sftpd.ProxyOff, nil, nil},
		{"required with CIDRs", `"proxyProtocol": "required", "proxyTrusted": ["10.0.0.0/24", "192.0.2.7", "2001:db8::/64"]`,
			sftpd.ProxyRequired, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("2001:db8::/64")}, nil},
		{"optional, CIDR masked", `"proxyProtocol": "optional", "proxyTrusted": ["10.1.2.3/8"]`,
			sftpd.ProxyOptional, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, nil},
		{"off with trusted", `"proxyProtocol": "off", "proxyTrusted": ["10.0.0.1"]`,
			sftpd.ProxyOff, []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}, nil},
		{"required without trusted", `"proxyProtocol": "required"`, 0, nil,
			[]string{s + `proxyTrusted: mandatory when proxyProtocol is "required"`}},
		{"optional with empty trusted", `"proxyProtocol": "optional", "proxyTrusted": []`, 0, nil,
			[]string{s + `proxyTrusted: mandatory when proxyProtocol is "optional"`}},
		{"unknown mode", `"proxyProtocol": "on"`, 0, nil, []string{s + `proxyProtocol: "on": want "off", "optional" or "required"`}},
		{"mode not a string", `"proxyProtocol": true`, 0, nil, []string{s + "proxyProtocol: expected string", "got bool"}},
		{"trusted not a list", `"proxyProtocol": "required", "proxyTrusted": "10.0.0.0/8"`, 0, nil, []string{s + "proxyTrusted: expected array of CIDRs"}},
		{"trusted garbage", `"proxyProtocol": "required", "proxyTrusted": ["10.0.0.0/33"]`, 0, nil, []string{s + `proxyTrusted: "10.0.0.0/33" is not a CIDR or an IP address`}},
		{"trusted host name", `"proxyProtocol": "required", "proxyTrusted": ["lb.example.com"]`, 0, nil, []string{s + `proxyTrusted: "lb.example.com" is not a CIDR`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg, _, err := ParseConfig(sectionJSON(tt.body), "", dir)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("got no error, want one saying %q", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error: got %q, want it to contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v, want no error", err)
			}
			if cfg.ProxyProtocol != tt.wantMode || !reflect.DeepEqual(cfg.ProxyTrusted, tt.wantTrusted) {
				t.Errorf("got %v %v, want %v %v", cfg.ProxyProtocol, cfg.ProxyTrusted, tt.wantMode, tt.wantTrusted)
			}
		})
	}
}

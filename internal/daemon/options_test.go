package daemon

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/sftpgate/sftpgate/internal/config"
)

// zeroSettings names the numeric fields of v (a struct) that are zero:
// settings left to the library's zero-value default.
func zeroSettings(v any, except ...string) []string {
	var out []string
	rv := reflect.ValueOf(v)
	for i := range rv.NumField() {
		f, name := rv.Field(i), rv.Type().Field(i).Name
		switch f.Kind() {
		case reflect.Int, reflect.Int64:
			if f.IsZero() && !slices.Contains(except, name) {
				out = append(out, name)
			}
		}
	}
	return out
}

// TestMountOptionsExplicit checks that the daemon gives fusefs every
// setting from the configuration, and that tmpMinFree "0" turns the
// reserve off (fusefs reads a zero MinFree as its 512 MiB default).
func TestMountOptionsExplicit(t *testing.T) {
	cfg := config.DefaultConfig(t.TempDir())
	// 0 is the configuration's own default for it: a quarter of tmpDir's
	// file system, as fusefs reads it.
	if got := zeroSettings(mountOptions(cfg), "MaxUserCopyBytes"); len(got) != 0 {
		t.Errorf("fusefs settings left to fusefs's defaults: %v, want none", got)
	}
	o := mountOptions(cfg)
	if o.AttrTTL != time.Second || o.GrantsTTL != 2*time.Second || o.IdleDelay != 30*time.Second || o.MinFree != 512<<20 {
		t.Errorf("got AttrTTL %v, GrantsTTL %v, IdleDelay %v, MinFree %d, want 1s, 2s, 30s, 512MiB", o.AttrTTL, o.GrantsTTL, o.IdleDelay, o.MinFree)
	}
	cfg.TmpMinFree = 0
	if got := mountOptions(cfg).MinFree; got >= 0 {
		t.Errorf("tmpMinFree 0: got MinFree %d, want a negative value (no reserve)", got)
	}
}

// TestSSHConfigExplicit checks that the daemon gives sftpd every setting
// from the configuration.
func TestSSHConfigExplicit(t *testing.T) {
	cfg := config.DefaultConfig(t.TempDir())
	c := sshConfig(cfg)
	// ProxyOff, the configuration's default, is sftpd's zero ProxyMode.
	if got := zeroSettings(c, "ProxyProtocol"); len(got) != 0 {
		t.Errorf("sftpd settings left to sftpd's defaults: %v, want none", got)
	}
	if c.MaxAuthTries != 3 || c.FailureDelay != 500*time.Millisecond || c.GracePeriod != 10*time.Second || c.KeyExchanges == nil || c.Ciphers == nil || c.MACs == nil {
		t.Errorf("got MaxAuthTries %d, FailureDelay %v, GracePeriod %v, algorithms %v %v %v, want 3, 500ms, 10s and the default lists",
			c.MaxAuthTries, c.FailureDelay, c.GracePeriod, c.KeyExchanges, c.Ciphers, c.MACs)
	}
}

package sftpd

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// Every numeric Config field refuses a negative value, naming the field
// (zero means the default), but IdleTimeout, where negative means never.
func TestNewRefusesEveryNegativeField(t *testing.T) {
	base := Config{HostKeys: []ssh.Signer{testHostKey(t)}, Auth: &fakeAuth{}, Mounts: &fakeMounter{}}
	typ := reflect.TypeFor[Config]()
	checked := 0
	for i := range typ.NumField() {
		f := typ.Field(i)
		if k := f.Type.Kind(); k != reflect.Int && k != reflect.Int64 || f.Name == "IdleTimeout" {
			continue
		}
		checked++
		t.Run(f.Name, func(t *testing.T) {
			cfg := base
			reflect.ValueOf(&cfg).Elem().Field(i).SetInt(-1)
			_, err := New(cfg)
			if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), f.Name+" ") {
				t.Errorf("got %v, want ErrBadConfig naming %s", err, f.Name)
			}
		})
	}
	if checked < 11 {
		t.Errorf("checked %d numeric fields, want the 11 Config has besides IdleTimeout", checked)
	}
}

package sftpd

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// keygen writes a key with ssh-keygen and returns its path.
func keygen(t *testing.T, name string, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Fatalf("ssh-keygen not found: %v", err)
	}
	path := filepath.Join(t.TempDir(), name)
	all := append([]string{"-q", "-f", path, "-C", "test"}, args...)
	if out, err := exec.Command(bin, all...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %v: %v: %s", args, err, out)
	}
	return path
}

func TestLoadHostKey(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		keyType string
	}{
		{"rsa openssh", []string{"-t", "rsa", "-b", "2048", "-N", ""}, "ssh-rsa"},
		{"rsa pem", []string{"-t", "rsa", "-b", "2048", "-N", "", "-m", "PEM"}, "ssh-rsa"},
		{"ecdsa openssh", []string{"-t", "ecdsa", "-N", ""}, "ecdsa-sha2-nistp256"},
		{"ecdsa pem", []string{"-t", "ecdsa", "-N", "", "-m", "PEM"}, "ecdsa-sha2-nistp256"},
		{"ecdsa pkcs8", []string{"-t", "ecdsa", "-b", "384", "-N", "", "-m", "PKCS8"}, "ecdsa-sha2-nistp384"},
		{"ed25519 openssh", []string{"-t", "ed25519", "-N", ""}, "ssh-ed25519"},
		{"ed25519 pkcs8", []string{"-t", "ed25519", "-N", "", "-m", "PKCS8"}, "ssh-ed25519"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := keygen(t, "key", tt.args...)
			s, err := LoadHostKey(path)
			if err != nil {
				t.Fatalf("LoadHostKey: %v", err)
			}
			if got := s.PublicKey().Type(); got != tt.keyType {
				t.Errorf("got key type %q, want %q", got, tt.keyType)
			}
		})
	}
}

func TestLoadHostKeyErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("this is not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	pub := keygen(t, "k", "-t", "ed25519", "-N", "") + ".pub"
	tests := []struct {
		name    string
		path    string
		problem string
	}{
		{"encrypted", keygen(t, "enc", "-t", "ed25519", "-N", "correct horse"), "encrypted"},
		{"encrypted pem", keygen(t, "encpem", "-t", "rsa", "-b", "2048", "-N", "password", "-m", "PEM"), "encrypted"},
		{"missing", filepath.Join(dir, "nope"), "no such file"},
		{"directory", dir, "not a regular file"},
		{"garbage", garbage, "not a usable private key"},
		{"empty", empty, "not a usable private key"},
		{"public key", pub, "not a usable private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := LoadHostKey(tt.path)
			if err == nil {
				t.Fatalf("got signer %v, want error", s.PublicKey().Type())
			}
			if !errors.Is(err, ErrHostKey) {
				t.Errorf("got %v, want it to wrap ErrHostKey", err)
			}
			if !strings.Contains(err.Error(), tt.path) {
				t.Errorf("got %q, want it to name %s", err, tt.path)
			}
			if !strings.Contains(err.Error(), tt.problem) {
				t.Errorf("got %q, want it to say %q", err, tt.problem)
			}
		})
	}
}

func TestLoadHostKeyUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		// root reads mode 000 files; the permission check cannot be shown.
		path := keygen(t, "k", "-t", "ed25519", "-N", "")
		if err := os.Chmod(path, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadHostKey(path); err != nil {
			t.Fatalf("as root, got %v, want the key to load", err)
		}
		return
	}
	path := keygen(t, "k", "-t", "ed25519", "-N", "")
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	_, err := LoadHostKey(path)
	if err == nil || !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), path) {
		t.Fatalf("got %v, want permission denied naming %s", err, path)
	}
}

func TestLoadHostKeys(t *testing.T) {
	ed := keygen(t, "ed", "-t", "ed25519", "-N", "")
	rsa := keygen(t, "rsa", "-t", "rsa", "-b", "2048", "-N", "")
	ecdsa := keygen(t, "ecdsa", "-t", "ecdsa", "-N", "")
	ed2 := keygen(t, "ed2", "-t", "ed25519", "-N", "")
	garbage := filepath.Join(t.TempDir(), "garbage")
	if err := os.WriteFile(garbage, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	signers, err := LoadHostKeys(ed, rsa, ecdsa)
	if err != nil {
		t.Fatalf("LoadHostKeys: %v", err)
	}
	var types []string
	for _, s := range signers {
		types = append(types, s.PublicKey().Type())
	}
	if got, want := strings.Join(types, " "), "ssh-ed25519 ssh-rsa ecdsa-sha2-nistp256"; got != want {
		t.Errorf("got key types %q, want %q", got, want)
	}

	tests := []struct {
		name  string
		paths []string
		want  []string // in the message
	}{
		{"none", nil, []string{"no host key file"}},
		{"two of a type", []string{ed, rsa, ed2}, []string{ed2, ed, "ssh-ed25519"}},
		{"same file twice", []string{rsa, rsa}, []string{rsa, "ssh-rsa"}},
		{"not a key", []string{ed, garbage}, []string{garbage, "not a usable private key"}},
		{"missing", []string{ed, garbage + "-nope"}, []string{garbage + "-nope", "no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := LoadHostKeys(tt.paths...)
			if err == nil {
				t.Fatalf("got %d signers, want an error", len(s))
			}
			if !errors.Is(err, ErrHostKey) {
				t.Errorf("got %v, want it to wrap ErrHostKey", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

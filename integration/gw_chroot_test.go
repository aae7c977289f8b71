package integration

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pkg/sftp"
)

// TestGatewayChroot tries to leave the session's root: with .., absolute
// paths of the server, symlinks, and guessed paths to another user's
// mounted view. Nothing outside alice's view can be read, listed or
// written.
func TestGatewayChroot(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{})
	aliceTok := g.addUser("alice", personalWS, commonWS)
	bobTok := g.addUser("bob", personalWS)

	// Bob is logged in, so his view is mounted next to alice's.
	bob := g.mustSFTP("bob", bobTok)
	writeFile(t, bob, "/personal-files/secret.txt", "bob's secret")
	alice := g.mustSFTP("alice", aliceTok)
	writeFile(t, alice, "/personal-files/mine.txt", "alice's file")
	if _, err := os.Stat(filepath.Join(g.mounts, "bob", personalWS, "secret.txt")); err != nil {
		t.Fatalf("bob's view is not mounted: %v", err)
	}

	t.Run("read outside", func(t *testing.T) {
		// The control: .. inside the view works.
		if b, err := readAll(alice, "/common-files/../personal-files/./mine.txt"); err != nil || b != "alice's file" {
			t.Fatalf("read through .. inside the view: got %q, %v, want %q", b, err, "alice's file")
		}
		for _, p := range []string{
			"/etc/passwd",
			"../../etc/passwd",
			"/../../etc/passwd",
			"/personal-files/../../etc/passwd",
			"/personal-files/../../../../../../../../etc/passwd",
			"/common-files/..%2F..%2Fetc/passwd",
			"/../sftpgate.db",
			"/../../work/sftpgate.db",
			"../../work/sftpgate.db",
			filepath.Join(g.work, "sftpgate.db"),
			filepath.Join(g.work, "pydio.json"),
			"/../bob/personal-files/secret.txt",
			"../bob/personal-files/secret.txt",
			"/personal-files/../../bob/personal-files/secret.txt",
			"/personal-files/../bob/secret.txt",
			"/personal-files/bob/secret.txt",
			"/personal-files/../../../" + strings.TrimPrefix(g.mounts, "/") + "/bob/personal-files/secret.txt",
			filepath.Join(g.mounts, "bob", personalWS, "secret.txt"),
		} {
			f, err := alice.Open(p)
			if err != nil {
				continue
			}
			b, rerr := readFile(f)
			t.Errorf("open %q: got success (%d bytes, %v: %.40q), want an error", p, len(b), rerr, b)
		}
	})

	t.Run("list outside", func(t *testing.T) {
		for _, p := range []string{"/", "/..", "..", "../..", "/personal-files/..", "/personal-files/../..", "/./../."} {
			entries, err := alice.ReadDir(p)
			if err != nil {
				continue // refusing is fine too
			}
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			slices.Sort(names)
			if want := []string{commonWS, personalWS}; !slices.Equal(names, want) {
				t.Errorf("ls %q: got %q, want alice's root %q", p, names, want)
			}
		}
		for _, p := range []string{"/personal-files", "/personal-files/../personal-files", "/../personal-files"} {
			entries, err := alice.ReadDir(p)
			if err != nil {
				t.Errorf("ls %q: %v", p, err)
				continue
			}
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if !slices.Equal(names, []string{"mine.txt"}) {
				t.Errorf("ls %q: got %q, want only alice's mine.txt", p, names)
			}
		}
		for _, p := range []string{"..", "/..", "/personal-files/../../.."} {
			if got, err := alice.RealPath(p); err == nil && got != "/" {
				t.Errorf("realpath %q: got %q, want /", p, got)
			}
		}
	})

	t.Run("write outside", func(t *testing.T) {
		for _, p := range []string{"/../escape.txt", "../../escape.txt", "/../bob/personal-files/planted.txt", "/personal-files/../../bob/personal-files/planted.txt", filepath.Join(g.dir, "escape.txt")} {
			if f, err := alice.Create(p); err == nil {
				f.Write([]byte("x"))
				f.Close()
			}
			if err := alice.Mkdir(p + ".d"); err == nil {
				t.Errorf("mkdir %q: got success, want an error", p+".d")
			}
		}
		for _, p := range []string{
			filepath.Join(g.mounts, "escape.txt"),
			filepath.Join(g.dir, "escape.txt"),
			filepath.Join(g.mounts, "bob", personalWS, "planted.txt"),
		} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("%s: got a file created from alice's session, want none", p)
			}
		}
		if keys := listKeys(t, g, g.personalBucket, "bob/"); !slices.Equal(keys, []string{"bob/secret.txt"}) {
			t.Errorf("bob's objects: got %q, want only bob/secret.txt", keys)
		}
	})

	t.Run("symlinks unsupported", func(t *testing.T) {
		for _, target := range []string{"/etc/passwd", "../../../etc/passwd", filepath.Join(g.work, "sftpgate.db"), "/personal-files/mine.txt"} {
			err := alice.Symlink(target, "/personal-files/link")
			if err == nil {
				t.Errorf("symlink %q: got success, want refused", target)
				continue
			}
			if code, _ := sftpStatus(err); code != 8 {
				t.Errorf("symlink %q: got %v, want SSH_FX_OP_UNSUPPORTED (8)", target, err)
			}
		}
		if err := alice.Link("/personal-files/mine.txt", "/personal-files/hard"); err == nil {
			t.Errorf("hard link: got success, want refused")
		}
		if _, err := alice.Lstat("/personal-files/link"); !os.IsNotExist(err) {
			t.Errorf("lstat link: got %v, want not exist", err)
		}
		// On the server side the mount refuses symlinks too.
		if err := os.Symlink("/etc/passwd", filepath.Join(g.mounts, "alice", personalWS, "link")); err == nil {
			t.Errorf("symlink on the mount: got success, want an error")
		}
	})
}

// writeFile writes a small file over SFTP and checks the close.
func writeFile(t testing.TB, sc *sftp.Client, path, data string) {
	t.Helper()
	f, err := sc.Create(path)
	if err != nil {
		t.Fatalf("create %s: %v", path, err)
	}
	if _, err := f.Write([]byte(data)); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close %s: %v", path, err)
	}
}

// readFile reads what is left of an open SFTP file and closes it.
func readFile(f *sftp.File) ([]byte, error) {
	defer f.Close()
	var b strings.Builder
	_, err := f.WriteTo(&b)
	return []byte(b.String()), err
}

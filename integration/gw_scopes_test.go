package integration

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pkg/sftp"
)

// TestCLITokenScopes runs `admin user token` with -s as Cells' users
// write it (short, long and = forms, repeated) through the real binary,
// checks what the store holds and what `token list` shows, and that a
// refused scope names its problem and stores nothing.
func TestCLITokenScopes(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.ok("admin", "user", "create", "-u", "alice")
	c.ok("admin", "workspace", "create", "--slug", "docs", "--bucket", "docs")
	c.ok("admin", "workspace", "create", "--slug", "home", "--bucket", "home", "--prefix", "{user}/")
	st := c.openStore()

	tests := []struct {
		name string
		args []string
		want []string // the scopes as token list shows them
	}{
		{"cells form", []string{"-u", "alice", "-e", "24h", "-s", "node:docs/reports:r"}, []string{"node:docs/reports:r"}},
		{"long flags", []string{"--user", "alice", "--expire", "2d", "--auto", "3600", "--scope", "node:docs/in:w"}, []string{"node:docs/in:w"}},
		{"= form", []string{"--user=alice", "--expire=1h", "--scope=node:home/drop/:rw"}, []string{"node:home/drop:rw"}},
		{"repeated", []string{"-u", "alice", "-e", "1h", "-s", "node:docs/a:r", "-s", "node:home:w", "-s", "node:docs/a:w"},
			[]string{"node:docs/a:rw", "node:home:w"}},
		{"colon in the path", []string{"-u", "alice", "-e", "1h", "-s", "node:docs/a:b:r"}, []string{"node:docs/a:b:r"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			label := "scopes " + tt.name
			c.ok(append(append([]string{"admin", "user", "token"}, tt.args...), "-l", label, "-q")...)
			tokens, err := st.Tokens(context.Background(), "alice")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, tok := range tokens {
				if tok.Label == label {
					for _, s := range tok.Scopes {
						got = append(got, s.String())
					}
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got stored scopes %q, want %q", got, tt.want)
			}
			list := c.ok("admin", "token", "list", "-u", "alice").stdout
			if !strings.Contains(list, strings.Join(tt.want, ",")) {
				t.Errorf("token list: got\n%s\nwant the scopes %q", list, strings.Join(tt.want, ","))
			}
		})
	}
	header, _ := tableRows(t, c.ok("admin", "token", "list").stdout)
	if !strings.Contains(header, "SCOPES") {
		t.Errorf("got header %q, want a SCOPES column", header)
	}

	before, _ := st.Tokens(context.Background(), "alice")
	bad := []struct {
		name string
		code int
		args []string
		want []string
	}{
		{"unknown workspace", 1, []string{"-s", "node:nope/a:r"}, []string{`unknown workspace "nope"`}},
		{"cells node uuid", 1, []string{"-s", "node:8c7a3e2e-0d5b-4f0e-9a1c-0f4b2c9d1e7a:rw"}, []string{"unknown workspace", "Cells node UUIDs are not supported"}},
		{"dot-dot", 2, []string{"-s", "node:docs/a/../../etc:r"}, []string{"--scope", `".."`}},
		{"bad permission", 2, []string{"-s", "node:docs/a:x"}, []string{"--scope", `permission "x"`}},
		{"no node prefix", 2, []string{"-s", "docs/a:r"}, []string{"--scope", "node:WORKSPACE/PATH:PERM"}},
		{"one bad among good", 1, []string{"-s", "node:docs/a:r", "-s", "node:nope:r"}, []string{`unknown workspace "nope"`}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			c.fails(tt.code, tt.want, append([]string{"admin", "user", "token", "-u", "alice", "-e", "1h"}, tt.args...)...)
		})
	}
	if after, _ := st.Tokens(context.Background(), "alice"); len(after) != len(before) {
		t.Errorf("got %d tokens after the refused ones, want %d (nothing stored)", len(after), len(before))
	}
	if help := c.ok("admin", "user", "token", "--help").stdout; !strings.Contains(help, "node UUIDs") {
		t.Errorf("token help does not say that Cells node UUIDs are not supported:\n%s", help)
	}
}

// scopedToken mints a token for login with the -s scopes given.
func (g *gateway) scopedToken(login string, scopes ...string) string {
	g.t.Helper()
	args := []string{"admin", "user", "token", "-u", login, "-e", "1h", "-q"}
	for _, s := range scopes {
		args = append(args, "-s", s)
	}
	tok := strings.TrimSpace(g.mustCLI(args...).stdout)
	if !tokenRE.MatchString(tok) {
		g.t.Fatalf("admin user token -q: got %q, want a token", tok)
	}
	g.secret(tok)
	return tok
}

func readDirNames(t *testing.T, c *sftp.Client, dir string) []string {
	t.Helper()
	fis, err := c.ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir(%q): %v", dir, err)
	}
	var out []string
	for _, fi := range fis {
		out = append(out, fi.Name())
	}
	slices.Sort(out)
	return out
}

// TestGatewayScopedTokens logs in with scoped tokens through the real
// gateway (FUSE mount over MinIO): a read-only scope reads its folder and
// nothing else (pkg/sftp and OpenSSH sftp), a write-only scope uploads but
// cannot read, a rename across a scope's edge is refused, and listings
// show only the way to the scopes.
func TestGatewayScopedTokens(t *testing.T) {
	t.Parallel()
	eachStore(t, testGatewayScopedTokens)
}

func testGatewayScopedTokens(t *testing.T, store string) {
	t.Parallel()
	g := startGateway(t, gwOptions{database: store})
	g.addUser("alice", personalWS, commonWS)
	for key, data := range map[string]string{
		"reports/q1.txt":      "q1 figures",
		"reports/2026/q2.txt": "q2",
		"reports-old/x.txt":   "old",
		"secret.txt":          "secret",
		"in/a.txt":            "a",
	} {
		putObject(t, g.minio, g.commonBucket, key, []byte(data))
	}
	putObject(t, g.minio, g.personalBucket, personalKey("alice", "notes.txt"), []byte("notes"))
	ro := g.scopedToken("alice", "node:"+commonWS+"/reports:r")
	wo := g.scopedToken("alice", "node:"+personalWS+"/drop:w", "node:"+commonWS+"/in:rw")

	t.Run("pkg/sftp read-only scope", func(t *testing.T) {
		c := g.mustSFTP("alice", ro)
		if got, want := readDirNames(t, c, "/"), []string{commonWS}; !slices.Equal(got, want) {
			t.Errorf("ls /: got %q, want %q", got, want)
		}
		if got, want := readDirNames(t, c, "/"+commonWS), []string{"reports"}; !slices.Equal(got, want) {
			t.Errorf("ls /%s: got %q, want %q", commonWS, got, want)
		}
		if got, want := readDirNames(t, c, "/"+commonWS+"/reports"), []string{"2026", "q1.txt"}; !slices.Equal(got, want) {
			t.Errorf("ls reports: got %q, want %q", got, want)
		}
		f, err := c.Open("/" + commonWS + "/reports/q1.txt")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil || string(b) != "q1 figures" {
			t.Errorf("read q1.txt: got %q, %v; want the object", b, err)
		}
		if fi, err := c.Stat("/" + commonWS); err != nil || fi.Mode()&0o222 != 0 {
			t.Errorf("stat /%s: got %v, %v; want a read-only directory", commonWS, fi, err)
		}
		for _, p := range []string{"/" + personalWS, "/" + personalWS + "/notes.txt", "/" + commonWS + "/secret.txt", "/" + commonWS + "/reports-old/x.txt"} {
			_, err := c.Open(p)
			if code, _ := sftpStatus(err); code != 2 {
				t.Errorf("open %s: got %v, want no such file", p, err)
			}
		}
		for name, op := range map[string]func() error{
			"put in scope":     func() error { _, err := c.Create("/" + commonWS + "/reports/new.txt"); return err },
			"put in parent":    func() error { _, err := c.Create("/" + commonWS + "/new.txt"); return err },
			"delete in scope":  func() error { return c.Remove("/" + commonWS + "/reports/q1.txt") },
			"delete in parent": func() error { return c.Remove("/" + commonWS + "/secret.txt") },
			"mkdir in scope":   func() error { return c.Mkdir("/" + commonWS + "/reports/d") },
		} {
			if code, _ := sftpStatus(op()); code != 3 {
				t.Errorf("%s: want permission denied", name)
			}
		}
		for _, k := range []string{"reports/q1.txt", "secret.txt"} {
			if _, err := statObject(g.minio, g.commonBucket, k); err != nil {
				t.Errorf("object %s: %v, want it kept", k, err)
			}
		}
		for _, k := range []string{"reports/new.txt", "new.txt", "reports/d/"} {
			if _, err := statObject(g.minio, g.commonBucket, k); !isNotFound(err) {
				t.Errorf("object %s: got %v, want none", k, err)
			}
		}
	})

	t.Run("OpenSSH sftp read-only scope", func(t *testing.T) {
		local := t.TempDir()
		if err := os.WriteFile(filepath.Join(local, "up.txt"), []byte("up"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, code := g.sftpBatch(t, "alice", ro, local, `
ls -1 /
ls -1 /`+commonWS+`
get /`+commonWS+`/reports/q1.txt q1.txt
get /`+commonWS+`/reports/2026/q2.txt q2.txt
`)
		if code != 0 {
			t.Fatalf("sftp -b: got exit %d, want 0\n%s", code, out)
		}
		if strings.Contains(out, personalWS) || strings.Contains(out, "secret.txt") || strings.Contains(out, "reports-old") {
			t.Errorf("listings show more than the way to the scope:\n%s", out)
		}
		for f, want := range map[string]string{"q1.txt": "q1 figures", "q2.txt": "q2"} {
			if b, err := os.ReadFile(filepath.Join(local, f)); err != nil || string(b) != want {
				t.Errorf("get %s: got %q, %v; want %q", f, b, err, want)
			}
		}
		for _, cmd := range []string{
			"get /" + commonWS + "/secret.txt",
			"get /" + personalWS + "/notes.txt",
			"ls /" + personalWS,
			"put up.txt /" + commonWS + "/reports/up.txt",
			"rm /" + commonWS + "/reports/q1.txt",
		} {
			out, code := g.sftpBatch(t, "alice", ro, local, cmd)
			if code == 0 {
				t.Errorf("sftp %q: got exit 0, want a failure\n%s", cmd, out)
			}
		}
		if _, err := statObject(g.minio, g.commonBucket, "reports/up.txt"); !isNotFound(err) {
			t.Errorf("object reports/up.txt: got %v, want none", err)
		}
	})

	t.Run("write-only scope and renames", func(t *testing.T) {
		c := g.mustSFTP("alice", wo)
		if got, want := readDirNames(t, c, "/"), []string{commonWS, personalWS}; !slices.Equal(got, want) {
			t.Errorf("ls /: got %q, want %q", got, want)
		}
		if err := c.Mkdir("/" + personalWS + "/drop"); err != nil {
			t.Fatalf("mkdir the scope's root: %v", err)
		}
		f, err := c.Create("/" + personalWS + "/drop/up.txt")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("uploaded")); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if b, err := getObject(g.minio, g.personalBucket, personalKey("alice", "drop/up.txt")); err != nil || string(b) != "uploaded" {
			t.Errorf("object drop/up.txt: got %q, %v; want uploaded", b, err)
		}
		if _, err := c.Open("/" + personalWS + "/drop/up.txt"); func() uint32 { code, _ := sftpStatus(err); return code }() != 3 {
			t.Errorf("open for reading in a write-only scope: got %v, want permission denied", err)
		}
		refused := [][2]string{
			{"/" + commonWS + "/in/a.txt", "/" + personalWS + "/drop/a.txt"},
			{"/" + personalWS + "/drop/up.txt", "/" + personalWS + "/up.txt"},
			{"/" + commonWS + "/in", "/" + commonWS + "/in2"},
		}
		for _, r := range refused {
			if code, _ := sftpStatus(c.Rename(r[0], r[1])); code != 3 {
				t.Errorf("rename %s -> %s: want permission denied", r[0], r[1])
			}
		}
		if _, err := statObject(g.minio, g.commonBucket, "in/a.txt"); err != nil {
			t.Errorf("object in/a.txt after a refused rename: %v", err)
		}
		if err := c.Rename("/"+commonWS+"/in/a.txt", "/"+commonWS+"/in/b.txt"); err != nil {
			t.Errorf("rename within the scope: %v", err)
		}
		if b, err := getObject(g.minio, g.commonBucket, "in/b.txt"); err != nil || string(b) != "a" {
			t.Errorf("object in/b.txt: got %q, %v; want a", b, err)
		}
	})

	t.Run("OpenSSH sftp write-only scope", func(t *testing.T) {
		local := t.TempDir()
		if err := os.WriteFile(filepath.Join(local, "put.txt"), []byte("put by openssh"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, code := g.sftpBatch(t, "alice", wo, local, `
-mkdir /`+personalWS+`/drop
put put.txt /`+personalWS+`/drop/put.txt
ls -l /`+personalWS+`/drop
`)
		if code != 0 || !strings.Contains(out, "put.txt") {
			t.Fatalf("sftp -b: got exit %d, want 0 and put.txt listed\n%s", code, out)
		}
		if b, err := getObject(g.minio, g.personalBucket, personalKey("alice", "drop/put.txt")); err != nil || string(b) != "put by openssh" {
			t.Errorf("object drop/put.txt: got %q, %v; want the put", b, err)
		}
		if out, code := g.sftpBatch(t, "alice", wo, local, "get /"+personalWS+"/drop/put.txt back.txt"); code == 0 {
			t.Errorf("get in a write-only scope: got exit 0, want a failure\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(local, "back.txt")); err == nil {
			t.Errorf("get in a write-only scope left back.txt")
		}
	})

	t.Run("never more than the grants", func(t *testing.T) {
		g.addUser("bob", commonWS+":ro")
		tok := g.scopedToken("bob", "node:"+commonWS+"/in:rw", "node:"+personalWS+":rw")
		c := g.mustSFTP("bob", tok)
		if got, want := readDirNames(t, c, "/"), []string{commonWS}; !slices.Equal(got, want) {
			t.Errorf("ls /: got %q, want %q (no workspace the user is not granted)", got, want)
		}
		if _, err := c.Create("/" + commonWS + "/in/bob.txt"); err == nil {
			t.Errorf("create under a read-only grant with an rw scope: got success, want a refusal")
		}
		if _, err := statObject(g.minio, g.commonBucket, "in/bob.txt"); !isNotFound(err) {
			t.Errorf("object in/bob.txt: got %v, want none", err)
		}
	})
}

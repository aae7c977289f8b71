package integration

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/pkg/sftp"
)

// TestGatewayControlNames checks that names with control characters or
// invalid UTF-8 are refused on every path-taking SFTP request with a
// status that says why, that nothing reaches the bucket, and that such a
// key written directly in MinIO is left out of listings (pkg/sftp and
// OpenSSH `ls`) while the rest of the directory is listed.
func TestGatewayControlNames(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{})
	tok := g.addUser("alice", personalWS)
	c := g.mustSFTP("alice", tok)
	const ws = "/" + personalWS + "/"
	writeSFTP := func(name string) error {
		f, err := c.Create(name)
		if err != nil {
			return err
		}
		if _, err := f.Write([]byte("data")); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	if err := writeSFTP(ws + "ok.txt"); err != nil {
		t.Fatalf("put ok.txt: %v", err)
	}
	if err := c.Mkdir(ws + "sub"); err != nil {
		t.Fatalf("mkdir sub: %v", err)
	}

	names := []struct{ name, why string }{
		{"evil\nfake-entry.txt", "file name contains a control character"},
		{"esc\x1b[31mred", "file name contains a control character"},
		{"del\x7f", "file name contains a control character"},
		{"c1\u0085", "file name contains a control character"},
		{"bad\xffutf8", "file name is not valid UTF-8"},
	}
	for _, tt := range names {
		t.Run(strings.ToValidUTF8(tt.name, "?"), func(t *testing.T) {
			bad := ws + tt.name
			ops := []struct {
				op string
				do func() error
			}{
				{"put", func() error { return writeSFTP(bad) }},
				{"put in a subdirectory", func() error { return writeSFTP(ws + "sub/" + tt.name) }},
				{"mkdir", func() error { return c.Mkdir(bad) }},
				{"mkdir of a parent", func() error { return c.Mkdir(bad + "/inner") }},
				{"rename to", func() error { return c.Rename(ws+"ok.txt", bad) }},
				{"rename from", func() error { return c.Rename(bad, ws+"x.txt") }},
				{"posix-rename to", func() error { return c.PosixRename(ws+"ok.txt", bad) }},
				{"remove", func() error { return c.Remove(bad) }},
				{"rmdir", func() error { return c.RemoveDirectory(bad) }},
				{"setstat", func() error { return c.Chmod(bad, 0o600) }},
				{"stat", func() error { _, err := c.Stat(bad); return err }},
				{"lstat", func() error { _, err := c.Lstat(bad); return err }},
				{"open for reading", func() error {
					f, err := c.Open(bad)
					if err == nil {
						f.Close()
					}
					return err
				}},
				{"opendir", func() error { _, err := c.ReadDir(bad); return err }},
			}
			for _, op := range ops {
				err := op.do()
				var se *sftp.StatusError
				if !errors.As(err, &se) || se.Code != 4 || !strings.Contains(err.Error(), tt.why) {
					t.Errorf("%s %q: got %v, want SSH_FX_FAILURE %q", op.op, tt.name, err, tt.why)
				}
			}
		})
	}
	if got, want := listKeys(t, g, g.personalBucket, "alice/"), []string{"alice/ok.txt", "alice/sub/"}; !slices.Equal(got, want) {
		t.Errorf("keys after the refusals: got %q, want %q", got, want)
	}

	// Keys written directly in MinIO: not listed, the rest is.
	for _, k := range []string{"evil\nfake-entry.txt", "esc\x1b[2Jclear", "ctl-dir\n/f", "visible.txt"} {
		putObject(t, g.minio, g.personalBucket, "alice/"+k, []byte("direct"))
	}
	want := []string{"ok.txt", "sub", "visible.txt"}
	fis, err := c.ReadDir(ws)
	if err != nil {
		t.Fatalf("ReadDir: %v", err)
	}
	var got []string
	for _, fi := range fis {
		got = append(got, fi.Name())
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("ReadDir: got %q, want %q", got, want)
	}
	out, code := g.sftpBatch(t, "alice", tok, t.TempDir(), "cd "+ws+"\nls -1")
	if code != 0 {
		t.Fatalf("sftp -b ls: got exit %d, want 0\n%s", code, out)
	}
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "sftp>") {
			lines = append(lines, l)
		}
	}
	slices.Sort(lines)
	if !slices.Equal(lines, want) {
		t.Errorf("sftp ls -1: got lines %q, want %q\n%s", lines, want, out)
	}
	if logs := g.logs(); !strings.Contains(logs, "skipped keys that cannot be file names") {
		t.Errorf("daemon log: want the skipped keys logged\n%s", tail(logs, 20))
	}
}

package integration

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/pkg/sftp"
)

// TestGatewayReadOnly uses a read-only grant: every write is refused with
// SFTP permission denied and changes nothing in MinIO; downloads work. The
// session root refuses writes too.
func TestGatewayReadOnly(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{})
	tok := g.addUser("alice", personalWS, commonWS+":ro")
	putObject(t, g.minio, g.commonBucket, "doc.txt", []byte("read me"))
	putObject(t, g.minio, g.commonBucket, "dir/inner.txt", []byte("inner"))
	putObject(t, g.minio, g.commonBucket, "emptydir/", nil)
	sc := g.mustSFTP("alice", tok)
	writeFile(t, sc, "/personal-files/mine.txt", "mine")
	before := listKeys(t, g, g.commonBucket, "")

	if b, err := readAll(sc, "/common-files/doc.txt"); err != nil || b != "read me" {
		t.Errorf("download from a read-only workspace: got %q, %v, want %q", b, err, "read me")
	}
	if b, err := readAll(sc, "/common-files/dir/inner.txt"); err != nil || b != "inner" {
		t.Errorf("download from a read-only workspace: got %q, %v, want %q", b, err, "inner")
	}

	mtime := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	for _, tt := range []struct {
		name string
		op   func() error
	}{
		{"upload new file", func() error { return createWrite(sc, "/common-files/new.txt", os.O_WRONLY|os.O_CREATE|os.O_TRUNC) }},
		{"overwrite", func() error { return createWrite(sc, "/common-files/doc.txt", os.O_WRONLY|os.O_CREATE|os.O_TRUNC) }},
		{"append", func() error { return createWrite(sc, "/common-files/doc.txt", os.O_WRONLY|os.O_APPEND) }},
		{"rename", func() error { return sc.Rename("/common-files/doc.txt", "/common-files/doc2.txt") }},
		{"rename out", func() error { return sc.Rename("/common-files/doc.txt", "/personal-files/doc.txt") }},
		{"rename in", func() error { return sc.Rename("/personal-files/mine.txt", "/common-files/mine.txt") }},
		{"posix-rename", func() error { return sc.PosixRename("/common-files/doc.txt", "/common-files/doc3.txt") }},
		{"delete", func() error { return sc.Remove("/common-files/doc.txt") }},
		{"mkdir", func() error { return sc.Mkdir("/common-files/newdir") }},
		{"rmdir", func() error { return sc.RemoveDirectory("/common-files/emptydir") }},
		{"setstat mtime", func() error { return sc.Chtimes("/common-files/doc.txt", mtime, mtime) }},
		{"truncate", func() error { return sc.Truncate("/common-files/doc.txt", 0) }},
		{"upload at the root", func() error { return createWrite(sc, "/new.txt", os.O_WRONLY|os.O_CREATE|os.O_TRUNC) }},
		{"mkdir at the root", func() error { return sc.Mkdir("/newdir") }},
		{"rename a workspace", func() error { return sc.Rename("/personal-files", "/renamed") }},
		{"rmdir a workspace", func() error { return sc.RemoveDirectory("/common-files") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.op()
			if code, _ := sftpStatus(err); code != 3 {
				t.Errorf("%s: got %v, want SSH_FX_PERMISSION_DENIED (3)", tt.name, err)
			}
		})
	}
	if after := listKeys(t, g, g.commonBucket, ""); !slices.Equal(after, before) {
		t.Errorf("common bucket after refused writes: got %q, want unchanged %q", after, before)
	}
	if b, err := readAll(sc, "/common-files/doc.txt"); err != nil || b != "read me" {
		t.Errorf("doc.txt after refused writes: got %q, %v, want %q", b, err, "read me")
	}
	if b, err := readAll(sc, "/personal-files/mine.txt"); err != nil || b != "mine" {
		t.Errorf("mine.txt after the refused move: got %q, %v, want %q", b, err, "mine")
	}
}

// createWrite opens path with flags, writes a byte and closes it; the
// first error is returned.
func createWrite(sc *sftp.Client, path string, flags int) error {
	f, err := sc.OpenFile(path, flags)
	if err != nil {
		return err
	}
	_, werr := f.Write([]byte("x"))
	cerr := f.Close()
	if werr != nil {
		return werr
	}
	return cerr
}

package fusefs_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sftpgate/sftpgate/fusefs"
	"github.com/sftpgate/sftpgate/internal/fsapi"
)

// stageThrough writes data[from:to] to name through w from offset from,
// waits until st records at least want staged bytes, and interrupts the
// writer.
func stageThrough(t *testing.T, w *workspace, st *memStaging, name string, data []byte, from, to, want int64) {
	t.Helper()
	flags := os.O_WRONLY
	if from == 0 {
		flags |= os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(filepath.Join(w.dir, name), flags, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data[from:to], from); err != nil {
		t.Fatal(err)
	}
	if err := eventually(30*time.Second, func() error {
		if n := st.staged(w.bucket, w.key(name)); n < want {
			return fmt.Errorf("staged %d bytes, want %d", n, want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := fsapi.Interrupt(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close of an interrupted upload: %v", err)
	}
}

// waitStatSize waits until name has size bytes through w.
func waitStatSize(t *testing.T, w *workspace, name string, size int64) {
	t.Helper()
	if err := eventually(10*time.Second, func() error {
		fi, err := os.Stat(filepath.Join(w.dir, name))
		if err != nil || fi.Size() != size {
			return fmt.Errorf("stat %s: got %v, %v; want %d bytes", name, fi, err, size)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// resumeFrom writes data[from:] to name through w, opened without
// truncation (a resume), and checks that the object is then data.
func resumeFrom(t *testing.T, w *workspace, name string, data []byte, from int64) {
	t.Helper()
	g, err := os.OpenFile(filepath.Join(w.dir, name), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.WriteAt(data[from:], from); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatalf("close of the upload resumed from %d: %v", from, err)
	}
	if got := mustGetObject(t, w.bucket, w.key(name)); !bytes.Equal(got, data) {
		t.Fatalf("object after the resume: got %d bytes, want the %d written", len(got), len(data))
	}
}

// checkNoUploadLeft fails when a multipart upload of key is left.
func checkNoUploadLeft(t *testing.T, bucket, key string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for u := range server.Client.ListIncompleteUploads(ctx, bucket, key, false) {
		if u.Err == nil {
			t.Errorf("multipart upload left: %s", u.UploadID)
		}
	}
}

// TestStagedResumeStreamed: the continuation of a staged upload resumed
// through B is streamed: B's parts advance the record while B writes, so
// that a second interruption leaves it at the larger size, and a resume
// through A from there completes the object, nothing downloaded.
func TestStagedResumeStreamed(t *testing.T) {
	const part = 5 << 20
	st := newMemStaging()
	opts := func() fusefs.Options {
		o := testOptions(t)
		o.PartSize, o.Staging, o.StagingLease = part, st, 2*time.Second
		return o
	}
	bucket := server.NewBucket(t, "ws")
	a := mountWorkspaceOn(t, opts(), bucket, "home/alice/", false)
	b := mountWorkspaceOn(t, opts(), bucket, "home/alice/", false)
	data := pattern(37, 5*part+123)
	key := a.key("r.bin")

	stageThrough(t, a, st, "r.bin", data, 0, 2*part+100, 2*part)
	waitStatSize(t, b, "r.bin", 2*part)
	// Through B: two more full parts written (and a bit), streamed.
	stageThrough(t, b, st, "r.bin", data, 2*part, 4*part+100, 4*part)
	if n := st.staged(bucket, key); n != 4*part {
		t.Fatalf("staged after the second interruption: got %d, want %d", n, 4*part)
	}
	waitStatSize(t, a, "r.bin", 4*part)
	if _, err := statObject(bucket, key); !isNoSuchKey(err) {
		t.Fatalf("object while staged: got %v, want NoSuchKey", err)
	}

	resumeFrom(t, a, "r.bin", data, 4*part)
	for name, w := range map[string]*workspace{"A": a, "B": b} {
		if n := w.g.counter.objectGets(bucket, key); n != 0 {
			t.Errorf("object GETs through %s: got %d, want 0", name, n)
		}
	}
	if n := st.staged(bucket, key); n != -1 {
		t.Errorf("staging record after the resume: got %d bytes staged, want none", n)
	}
	checkNoUploadLeft(t, bucket, key)
}

// TestStagedResumeStreamBroken: a write below what the resumed stream
// sent breaks it: the record goes back to the claimed size and the close
// sends the rest whole, the object being what was written last.
func TestStagedResumeStreamBroken(t *testing.T) {
	const part = 5 << 20
	st := newMemStaging()
	o := testOptions(t)
	o.PartSize, o.Staging, o.StagingLease = part, st, 2*time.Second
	bucket := server.NewBucket(t, "ws")
	a := mountWorkspaceOn(t, o, bucket, "home/alice/", false)
	data := pattern(41, 4*part+77)
	key := a.key("k.bin")

	stageThrough(t, a, st, "k.bin", data, 0, part+100, part)
	waitStatSize(t, a, "k.bin", part)
	g, err := os.OpenFile(filepath.Join(a.dir, "k.bin"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.WriteAt(data[part:3*part+10], part); err != nil {
		t.Fatal(err)
	}
	if err := eventually(30*time.Second, func() error {
		if n := st.staged(bucket, key); n < 3*part {
			return fmt.Errorf("staged %d bytes, want %d", n, 3*part)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Into part 2, already sent: the stream breaks.
	want := bytes.Clone(data)
	copy(want[part+10:], "changed after the part was sent")
	if _, err := g.WriteAt(want[part+10:part+100], part+10); err != nil {
		t.Fatal(err)
	}
	if err := eventually(10*time.Second, func() error {
		if n := st.staged(bucket, key); n != part {
			return fmt.Errorf("staged %d bytes, want %d (back to the claimed size)", n, part)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.WriteAt(want[3*part+10:], 3*part+10); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if got := mustGetObject(t, bucket, key); !bytes.Equal(got, want) {
		t.Fatalf("object: got %d bytes, want the %d written (same bytes: %v)", len(got), len(want), bytes.Equal(got[:min(len(got), len(want))], want[:min(len(got), len(want))]))
	}
	if n := st.staged(bucket, key); n != -1 {
		t.Errorf("staging record after the close: got %d bytes staged, want none", n)
	}
	checkNoUploadLeft(t, bucket, key)
}

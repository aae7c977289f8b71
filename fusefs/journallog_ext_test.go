package fusefs_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sftpgate/sftpgate/fusefs"
)

// journalRecord returns v as one record of a journal log, as the cache
// writes it: "sgj1", the payload's length and CRC-32C (little endian),
// the JSON payload.
func journalRecord(tb testing.TB, v any) []byte {
	tb.Helper()
	p, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	b := []byte("sgj1")
	b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(p, crc32.MakeTable(crc32.Castagnoli)))
	return append(b, p...)
}

// wholeRecords counts the records of a journal log, false when anything
// but whole records is in it.
func wholeRecords(b []byte) (int, bool) {
	n := 0
	for len(b) > 0 {
		if len(b) < 12 || string(b[:4]) != "sgj1" {
			return n, false
		}
		l := int(binary.LittleEndian.Uint32(b[4:]))
		if l > len(b)-12 || crc32.Checksum(b[12:12+l], crc32.MakeTable(crc32.Castagnoli)) != binary.LittleEndian.Uint32(b[8:]) {
			return n, false
		}
		b = b[12+l:]
		n++
	}
	return n, true
}

// cacheFiles lists the cache directory's files by suffix (spare files
// made ahead left out).
func cacheFiles(t *testing.T, dir string) (data, journals, other []string) {
	t.Helper()
	for _, n := range readDirNames(t, dir) {
		switch {
		case strings.HasSuffix(n, ".data"):
			data = append(data, n)
		case strings.HasSuffix(n, ".json"):
			journals = append(journals, n)
		case n != "conflicts" && !strings.HasSuffix(n, ".spare"):
			other = append(other, n)
		}
	}
	return data, journals, other
}

// TestJournalOneFilePerCopy: a small file written through the mount makes
// two files in the cache, its data file and its journal, and the journal
// is the same file (inode) from the first write to after the close's
// upload, which it records.
func TestJournalOneFilePerCopy(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	cacheDir := filepath.Join(w.g.opts.TmpDir, "sftpgate")
	f, err := os.Create(filepath.Join(w.dir, "small.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("four KiB or so")); err != nil {
		t.Fatal(err)
	}
	data, journals, other := cacheFiles(t, cacheDir)
	if len(data) != 1 || len(journals) != 1 || len(other) != 0 {
		t.Fatalf("cache after the first write: data %v, journals %v, other %v; want one data file and one journal", data, journals, other)
	}
	jpath := filepath.Join(cacheDir, journals[0])
	var before syscall.Stat_t
	if err := syscall.Lstat(jpath, &before); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte(", then more")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	var after syscall.Stat_t
	if err := syscall.Lstat(jpath, &after); err != nil {
		t.Fatalf("journal after the close: %v", err)
	}
	if after.Ino != before.Ino {
		t.Errorf("journal inode: got %d after the close, want %d (the same file, appended to)", after.Ino, before.Ino)
	}
	if d2, j2, o2 := cacheFiles(t, cacheDir); !slices.Equal(d2, data) || !slices.Equal(j2, journals) || len(o2) != 0 {
		t.Errorf("cache after the close: data %v, journals %v, other %v; want %v and %v only", d2, j2, o2, data, journals)
	}
	b, err := os.ReadFile(jpath)
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.LastIndex(b, []byte("sgj1")); i < 0 || !bytes.Contains(b[i:], []byte(`"dirty":false`)) {
		t.Errorf("journal after the close: got %q, want its last record clean", b)
	}
	if got := mustGetObject(t, w.bucket, w.key("small.txt")); string(got) != "four KiB or so, then more" {
		t.Errorf("object: got %q", got)
	}
}

// TestJournalTornRecord: at start, a journal whose last record a crash
// cut is read as its record before (a save that never returned), and the
// copy recovers from it: a dirty one waits as an interrupted upload cut to
// its durable length, published nowhere. A journal with no whole record is
// not trusted (moved to conflicts).
func TestJournalTornRecord(t *testing.T) {
	o := testOptions(t)
	bucket := server.NewBucket(t, "ws")
	cacheDir := filepath.Join(o.TmpDir, "sftpgate")
	mkdirMode(t, cacheDir, 0o700)
	const (
		idTorn      = "0000000000000000000000c1"
		idTornFirst = "0000000000000000000000c2"
	)
	content := []byte("0123456789abcdef")
	dirty := plantedJournal{Bucket: bucket, Key: "home/alice/torn.txt", Size: int64(len(content)), Mtime: time.Now(),
		Dirty: true, Complete: true, Durable: 6}
	later := dirty
	later.Durable = int64(len(content))
	rec := journalRecord(t, later)
	writeFile(t, filepath.Join(cacheDir, idTorn+".json"), append(journalRecord(t, dirty), rec[:len(rec)-3]...))
	writeFile(t, filepath.Join(cacheDir, idTorn+".data"), content)
	first := dirty
	first.Key = "home/alice/torn-first.txt"
	rec = journalRecord(t, first)
	writeFile(t, filepath.Join(cacheDir, idTornFirst+".json"), rec[:len(rec)/2])
	writeFile(t, filepath.Join(cacheDir, idTornFirst+".data"), content)

	g := newGateway(t, o)
	g.grants.set("alice", fusefs.Workspace{Slug: "ws", Bucket: bucket, Prefix: "home/alice/"})
	dir := filepath.Join(g.acquire(t, "alice"), "ws")

	fi, err := os.Stat(filepath.Join(dir, "torn.txt"))
	if err != nil || fi.Size() != dirty.Durable {
		t.Errorf("interrupted upload after a torn record: got %v, %v, want size %d (the durable length of the record before)", fi, err, dirty.Durable)
	}
	if _, err := statObject(bucket, dirty.Key); !isNoSuchKey(err) {
		t.Errorf("object after recovery: got %v, want NoSuchKey (nothing published)", err)
	}
	conflicts := readDirNames(t, filepath.Join(cacheDir, "conflicts"))
	if slices.Contains(conflicts, idTorn+".json") {
		t.Errorf("conflicts/ holds %v, want %s.json kept (its first record is whole)", conflicts, idTorn)
	}
	if !slices.Contains(conflicts, idTornFirst+".json") {
		t.Errorf("conflicts/ holds %v, want %s.json (no whole record) in it", conflicts, idTornFirst)
	}
	if _, err := os.Stat(filepath.Join(dir, "torn-first.txt")); !os.IsNotExist(err) {
		t.Errorf("file of a journal with no whole record: got %v, want it absent", err)
	}

	// The resume completes the file; its journal, found at start, is
	// rewritten whole (the torn bytes go).
	f, err := os.OpenFile(filepath.Join(dir, "torn.txt"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(content[dirty.Durable:], dirty.Durable); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close of the resume: %v", err)
	}
	if got := mustGetObject(t, bucket, dirty.Key); !bytes.Equal(got, content) {
		t.Errorf("object after the resume: got %q, want %q", got, content)
	}
	b, err := os.ReadFile(filepath.Join(cacheDir, idTorn+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := wholeRecords(b); !ok || n == 0 {
		t.Errorf("journal after the resume: got %q (%d whole records), want whole records only (the torn one gone)", b, n)
	}
}

// TestCleanJournalLost: the clean journal of a new file's upload is not
// fsync'd; a power loss may take the journal back to its dirty record (no
// object at the key, nothing durable). At start that copy waits as an
// interrupted upload the published object supersedes: the file shows the
// object, which stays as it was, and the copy is dropped.
func TestCleanJournalLost(t *testing.T) {
	o := testOptions(t)
	bucket := server.NewBucket(t, "ws")
	cacheDir := filepath.Join(o.TmpDir, "sftpgate")
	mkdirMode(t, cacheDir, 0o700)
	const id = "0000000000000000000000c3"
	published := pattern(21, 4<<10)
	putObject(t, bucket, "home/alice/new.bin", published)
	dirty := plantedJournal{Bucket: bucket, Key: "home/alice/new.bin", Size: int64(len(published)), Mtime: time.Now(),
		Dirty: true, Complete: true}
	writeFile(t, filepath.Join(cacheDir, id+".json"), journalRecord(t, dirty))
	writeFile(t, filepath.Join(cacheDir, id+".data"), published)

	g := newGateway(t, o)
	g.grants.set("alice", fusefs.Workspace{Slug: "ws", Bucket: bucket, Prefix: "home/alice/"})
	dir := filepath.Join(g.acquire(t, "alice"), "ws")

	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 1 || ents[0].Name() != "new.bin" {
		t.Fatalf("listing: got %v, %v, want [new.bin]", ents, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "new.bin")); err != nil || fi.Size() != int64(len(published)) {
		t.Errorf("stat: got %v, %v, want the object's size %d", fi, err, len(published))
	}
	if got, err := os.ReadFile(filepath.Join(dir, "new.bin")); err != nil || !bytes.Equal(got, published) {
		t.Errorf("read: got %d bytes, %v, want the object's %d", len(got), err, len(published))
	}
	if got := mustGetObject(t, bucket, "home/alice/new.bin"); !bytes.Equal(got, published) {
		t.Errorf("object: got %d bytes, want the %d published, unchanged", len(got), len(published))
	}
	if err := eventually(10*time.Second, func() error {
		if _, err := os.Lstat(filepath.Join(cacheDir, id+".json")); !os.IsNotExist(err) {
			return fmt.Errorf("journal of the superseded copy: %v, want it removed", err)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

package fusefs

import (
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mustRecord returns j as one journal record.
func mustRecord(t *testing.T, j journal) []byte {
	t.Helper()
	b, err := encodeJournal(j)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDecodeJournal: the last whole record is the journal; a torn or
// corrupt record and what follows it are not read; a file with no whole
// record is refused; an older version's JSON journal is still read.
func TestDecodeJournal(t *testing.T) {
	first := journal{Bucket: "b", Key: "k", Size: 10, Dirty: true, Durable: 4}
	second := journal{Bucket: "b", Key: "k", Size: 10, BaseETag: "e2", BaseExists: true}
	r1, r2 := mustRecord(t, first), mustRecord(t, second)
	legacy, _ := json.Marshal(second)
	flipped := append([]byte(nil), r2...)
	flipped[len(flipped)-2] ^= 0x20
	badLen := append([]byte(nil), r2...)
	badLen[4] ^= 0x01
	tests := []struct {
		name string
		b    []byte
		want *journal // nil: refused
	}{
		{name: "one record", b: r1, want: &first},
		{name: "two records", b: concat(r1, r2), want: &second},
		{name: "older version's JSON", b: legacy, want: &second},
		{name: "second record's payload corrupt", b: concat(r1, flipped), want: &first},
		{name: "second record's length corrupt", b: concat(r1, badLen), want: &first},
		{name: "whole record after a corrupt one", b: concat(r1, flipped, r2), want: &first},
		{name: "empty", b: nil},
		{name: "zeros", b: make([]byte, 64)},
		{name: "garbage", b: []byte("sgj1 not a journal at all")},
		{name: "torn JSON of an older version", b: legacy[:len(legacy)-1]},
	}
	// A crash may cut the last record anywhere.
	for cut := range len(r2) {
		tests = append(tests, struct {
			name string
			b    []byte
			want *journal
		}{name: "second record cut", b: concat(r1, r2[:cut]), want: &first})
		tests = append(tests, struct {
			name string
			b    []byte
			want *journal
		}{name: "first record cut", b: r1[:min(cut, len(r1)-1)]})
	}
	for _, tt := range tests {
		var j journal
		err := decodeJournal(tt.b, &j)
		switch {
		case tt.want == nil && err == nil:
			t.Errorf("%s (%d bytes): got %+v, want refused", tt.name, len(tt.b), j)
		case tt.want != nil && err != nil:
			t.Errorf("%s (%d bytes): got %v, want %+v", tt.name, len(tt.b), err, *tt.want)
		case tt.want != nil && !sameJournal(j, *tt.want):
			t.Errorf("%s (%d bytes): got %+v, want %+v", tt.name, len(tt.b), j, *tt.want)
		}
	}
}

func concat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

func sameJournal(a, b journal) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// inode returns the inode number of name in root.
func inode(t *testing.T, root *os.Root, name string) uint64 {
	t.Helper()
	fi, err := root.Lstat(name)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// TestJournalLogWrite: an entry's saves append to the one file it created
// (no new inode per save); a file it did not write, or changed behind it,
// or a log grown past journalLogMax is rewritten whole as one record; the
// journal read back is always the last one saved.
func TestJournalLogWrite(t *testing.T) {
	root, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	const id = "0123456789abcdef01234567"
	check := func(want journal) {
		t.Helper()
		got, err := readJournal(root, id)
		if err != nil || !sameJournal(got, want) {
			t.Fatalf("journal read back: got %+v, %v, want %+v", got, err, want)
		}
	}
	var l journalLog
	j := journal{Bucket: "b", Key: "k", Dirty: true, Mtime: time.Unix(1, 0).UTC()}
	if err := l.write(root, nil, id, j, false, true); err != nil {
		t.Fatalf("first save: %v", err)
	}
	check(j)
	ino := inode(t, root, journalName(id))
	for i := range 20 {
		j.Size = int64(i)
		if err := l.write(root, nil, id, j, i%2 == 0, false); err != nil {
			t.Fatalf("save %d: %v", i, err)
		}
		check(j)
		if got := inode(t, root, journalName(id)); got != ino {
			t.Fatalf("save %d: journal inode %d, want %d (appended, not replaced)", i, got, ino)
		}
	}
	if fi, _ := root.Lstat(journalName(id)); fi.Size() != l.size {
		t.Fatalf("journal size: got %d, want %d", fi.Size(), l.size)
	}

	// Changed behind the entry: rewritten whole.
	f, err := root.OpenFile(journalName(id), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("sgj1 torn"))
	f.Close()
	j.Size = 100
	if err := l.write(root, nil, id, j, true, false); err != nil {
		t.Fatalf("save after a change behind the entry: %v", err)
	}
	check(j)
	if fi, _ := root.Lstat(journalName(id)); fi.Size() != int64(len(mustRecord(t, j))) || l.size != fi.Size() {
		t.Fatalf("journal after a change behind the entry: %d bytes (log says %d), want one record of %d", fi.Size(), l.size, len(mustRecord(t, j)))
	}

	// Grown past journalLogMax: rewritten whole, then appended to again.
	j.Key = "k" + strings.Repeat("x", 4000)
	for i := range 2 * journalLogMax / 4000 {
		j.Size = int64(i)
		if err := l.write(root, nil, id, j, false, false); err != nil {
			t.Fatalf("save %d of a big journal: %v", i, err)
		}
		check(j)
		if l.size > journalLogMax {
			t.Fatalf("save %d: log of %d bytes, want at most %d", i, l.size, journalLogMax)
		}
	}

	// A journal found at start (not written by this entry): rewritten.
	var found journalLog
	j.Key, j.Size = "k", 7
	if err := found.write(root, nil, id, j, true, false); err != nil {
		t.Fatalf("save of a journal found at start: %v", err)
	}
	check(j)
	if fi, _ := root.Lstat(journalName(id)); fi.Size() != int64(len(mustRecord(t, j))) {
		t.Fatalf("journal found at start, saved: %d bytes, want one record of %d", fi.Size(), len(mustRecord(t, j)))
	}

	// A fresh entry whose file exists (a failed first save): rewritten.
	var fresh journalLog
	j.Size = 8
	if err := fresh.write(root, nil, id, j, false, true); err != nil {
		t.Fatalf("fresh save over an existing file: %v", err)
	}
	check(j)

	// A symlink in place of the journal is replaced, never followed.
	victim := t.TempDir() + "/victim"
	if err := os.WriteFile(victim, []byte("victim"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := root.Remove(journalName(id)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, root.Name()+"/"+journalName(id)); err != nil {
		t.Fatal(err)
	}
	fresh.size = 0
	l.size = 1
	for _, w := range []*journalLog{&l, &fresh} {
		err := w.write(root, nil, id, j, true, w == &fresh)
		if b, _ := os.ReadFile(victim); string(b) != "victim" {
			t.Fatalf("victim behind a journal symlink: got %q, want it untouched", b)
		}
		if err != nil {
			t.Errorf("save over a symlink (fresh %v): %v, want the journal rewritten", w == &fresh, err)
		}
	}
	fi, err := root.Lstat(journalName(id))
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("journal after saves over a symlink: %v, %v, want a regular file", fi, err)
	}
	check(j)
}

package fusefs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// journal is the small JSON record kept next to each local copy so that a
// crash loses nothing the client was told was written (its file is a log
// of such records, journallog.go).
type journal struct {
	// Bucket and Key name the object the local copy belongs to.
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	// BaseETag is the ETag of the object the copy started from (or was
	// last uploaded as); BaseExists is false for a file that never had one.
	BaseETag   string `json:"base_etag,omitempty"`
	BaseExists bool   `json:"base_exists"`
	// Size is the logical size; the data file holds it when Complete.
	Size int64 `json:"size"`
	// Mtime is the modification time to store with the object.
	Mtime time.Time `json:"mtime"`
	// Mode is the stored permission bits, 0 when none.
	Mode uint32 `json:"mode,omitempty"`
	// Dirty is true while the local copy holds bytes not yet uploaded.
	Dirty bool `json:"dirty"`
	// Complete is true when the data file holds every byte of the file.
	Complete bool `json:"complete"`
	// TailMode: the data file holds only the bytes from TailFrom on, to be
	// appended server-side to the object BaseETag.
	TailMode bool  `json:"tail_mode,omitempty"`
	TailFrom int64 `json:"tail_from,omitempty"`
	// Uploads are the multipart uploads of a streaming upload begun and
	// not completed or aborted yet: a start after a crash aborts them.
	Uploads []pendingUpload `json:"uploads,omitempty"`
	// Interrupted: no writer is left and no close published the changes;
	// the copy waits for a resume and is never uploaded as it is.
	Interrupted bool `json:"interrupted,omitempty"`
	// Durable is the length of the copy's contiguous prefix last
	// fdatasync'd: after a crash, a dirty copy is cut to it.
	Durable int64 `json:"durable,omitempty"`
	// User is the login the copy counts against (per-user limits).
	User string `json:"user,omitempty"`
}

// maxJournalSize bounds the journals read at start: a bigger one is not
// one this package wrote.
const maxJournalSize = 1 << 20

// dataName and journalName name the two files of entry id in the cache
// root.
func dataName(id string) string    { return id + ".data" }
func journalName(id string) string { return id + ".json" }

// writeJournal writes j atomically in root: a temporary file created anew
// (a leftover, even a symlink, is removed first, never followed), fsync,
// rename.
func writeJournal(root *os.Root, id string, j journal) error {
	return writeJournalSync(root, id, j, true)
}

// writeJournalSync is writeJournal, with the fsync of the new journal only
// when sync is true.
func writeJournalSync(root *os.Root, id string, j journal, sync bool) error {
	b, err := encodeJournal(j)
	if err != nil {
		return fmt.Errorf("journal %s: %w", id, err)
	}
	return writeRecord(root, id, b, sync)
}

// writeRecord replaces the journal of id with b (journallog.go) through a
// temporary file, fsync'd when sync is true.
func writeRecord(root *os.Root, id string, b []byte, sync bool) error {
	tmp := id + ".json.tmp"
	if err := root.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("journal %s: %w", id, err)
	}
	f, err := root.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("journal %s: %w", id, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		root.Remove(tmp)
		return fmt.Errorf("journal %s: %w", id, err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			root.Remove(tmp)
			return fmt.Errorf("journal %s: %w", id, err)
		}
	}
	if err := f.Close(); err != nil {
		root.Remove(tmp)
		return fmt.Errorf("journal %s: %w", id, err)
	}
	if err := root.Rename(tmp, journalName(id)); err != nil {
		root.Remove(tmp)
		return fmt.Errorf("journal %s: %w", id, err)
	}
	return nil
}

// readJournal reads the journal of entry id from root: a regular file (a
// symlink is refused) of less than maxJournalSize bytes.
func readJournal(root *os.Root, id string) (journal, error) {
	var j journal
	f, err := openRegular(root, journalName(id), os.O_RDONLY)
	if err != nil {
		return j, fmt.Errorf("journal %s: %w", id, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxJournalSize))
	if err != nil {
		return j, fmt.Errorf("journal %s: %w", id, err)
	}
	if len(b) >= maxJournalSize {
		return j, fmt.Errorf("journal %s: %d bytes or more, over the limit", id, maxJournalSize)
	}
	if err := decodeJournal(b, &j); err != nil {
		return j, fmt.Errorf("journal %s: %w", id, err)
	}
	return j, nil
}

package fusefs

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// journal is the small JSON record kept next to each local copy so that a
// crash loses nothing the client was told was written.
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
}

// dataPath and journalPath name the two files of entry id.
func dataPath(dir, id string) string    { return filepath.Join(dir, id+".data") }
func journalPath(dir, id string) string { return filepath.Join(dir, id+".json") }

// writeJournal writes j atomically: a temporary file, fsync, rename.
func writeJournal(dir, id string, j journal) error {
	b, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("journal %s: %w", id, err)
	}
	tmp := filepath.Join(dir, id+".json.tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("journal %s: %w", id, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("journal %s: %w", id, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("journal %s: %w", id, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("journal %s: %w", id, err)
	}
	if err := os.Rename(tmp, journalPath(dir, id)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("journal %s: %w", id, err)
	}
	return nil
}

// readJournal reads the journal of entry id.
func readJournal(dir, id string) (journal, error) {
	var j journal
	b, err := os.ReadFile(journalPath(dir, id))
	if err != nil {
		return j, fmt.Errorf("journal %s: %w", id, err)
	}
	if err := json.Unmarshal(b, &j); err != nil {
		return j, fmt.Errorf("journal %s: %w", id, err)
	}
	return j, nil
}

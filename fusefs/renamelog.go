package fusefs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// A file rename is a server-side copy and a delete: a crash between them
// would leave the object at both names, the new one holding what no
// successful rename put there. So a rename is recorded first (an intent,
// <id>.rename, fsync'd) and forgotten when done; the next start finishes
// an intent whose copy was made (deletes the source) and drops one whose
// copy was not. Either way the store shows the rename done or not done,
// never half.

// renameIntent is the record of a file rename in progress.
type renameIntent struct {
	SrcBucket string `json:"src_bucket"`
	SrcKey    string `json:"src_key"`
	DstBucket string `json:"dst_bucket"`
	DstKey    string `json:"dst_key"`
	// DstETag is what the destination held before the copy ("" absent):
	// it still holds that when the copy was not made.
	DstETag string `json:"dst_etag,omitempty"`
	// Entry is the local copy that follows the rename (its journal still
	// names the source when the crash came before its rekey), "" none.
	Entry string `json:"entry,omitempty"`
}

func renameName(id string) string { return id + ".rename" }

// beginRename records ri before its copy is made and returns the id that
// endRename takes.
func (c *cache) beginRename(ctx context.Context, ri renameIntent) (string, error) {
	dst, err := c.ob.stat(ctx, ri.DstBucket, ri.DstKey)
	switch {
	case err == nil:
		ri.DstETag = dst.ETag
	case !isNotFound(err):
		return "", err
	}
	b, err := json.Marshal(ri)
	if err != nil {
		return "", err
	}
	id := newID()
	if err := writeFileAtomic(c.root, renameName(id), b); err != nil {
		return "", fmt.Errorf("rename record: %w", err)
	}
	return id, nil
}

// endRename forgets the record of a rename that is done or failed.
func (c *cache) endRename(id string) {
	if err := c.root.Remove(renameName(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		c.log.Warn("cannot remove a rename record", "id", id, "err", err)
	}
}

// writeFileAtomic writes name in root: a temporary file created anew (a
// leftover, even a symlink, is removed first, never followed), fsync,
// rename.
func writeFileAtomic(root *os.Root, name string, b []byte) error {
	tmp := name + ".tmp"
	if err := root.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := root.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		root.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		root.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		root.Remove(tmp)
		return err
	}
	if err := root.Rename(tmp, name); err != nil {
		root.Remove(tmp)
		return err
	}
	return nil
}

// recoverRename finishes or drops the rename recorded as id, at start. A
// record this package could not have written (name, size, keys outside
// the workspaces) goes to conflicts/. A record the store cannot be asked
// about now stays for the next start.
func (m *Manager) recoverRename(ctx context.Context, id string) {
	c := m.cache
	log := m.log.With("rename", id)
	ri, err := m.trustRename(id)
	if err != nil {
		log.Warn("rename record not trusted; moved to conflicts", "reason", err)
		if err := c.root.Rename(renameName(id), conflictsDir+"/"+renameName(id)); err != nil {
			log.Error("cannot move a rename record to conflicts", "err", err)
		}
		return
	}
	log = log.With("from", ri.SrcBucket+"/"+ri.SrcKey, "to", ri.DstBucket+"/"+ri.DstKey)
	dst, derr := m.ob.stat(ctx, ri.DstBucket, ri.DstKey)
	_, serr := m.ob.stat(ctx, ri.SrcBucket, ri.SrcKey)
	if (derr != nil && !isNotFound(derr)) || (serr != nil && !isNotFound(serr)) {
		log.Warn("cannot check an interrupted rename now; kept for the next start", "err", errors.Join(derr, serr))
		return
	}
	copied := derr == nil && dst.ETag != ri.DstETag
	switch {
	case isNotFound(serr):
		// The delete was done: the rename was.
	case copied:
		if err := m.ob.st.Remove(ctx, ri.SrcBucket, ri.SrcKey); err != nil {
			log.Warn("cannot finish an interrupted rename now; kept for the next start", "err", err)
			return
		}
		log.Info("finished a rename interrupted by a crash")
	default:
		log.Info("dropped a rename interrupted by a crash before its copy")
		c.endRename(id)
		return
	}
	if ri.Entry != "" && validID(ri.Entry) {
		if j, err := readJournal(c.root, ri.Entry); err == nil && j.Bucket == ri.SrcBucket && j.Key == ri.SrcKey {
			j.Bucket, j.Key = ri.DstBucket, ri.DstKey
			j.BaseETag, j.BaseExists = dst.ETag, derr == nil
			if err := writeJournal(c.root, ri.Entry, j); err != nil {
				log.Warn("cannot move the local copy of a renamed file", "err", err)
			}
		}
	}
	c.endRename(id)
}

// trustRename reads the record id and checks it as trustJournal checks a
// journal.
func (m *Manager) trustRename(id string) (renameIntent, error) {
	var ri renameIntent
	if !validID(id) {
		return ri, fmt.Errorf("file name %q is not a rename id", renameName(id))
	}
	f, err := openRegular(m.cache.root, renameName(id), os.O_RDONLY)
	if err != nil {
		return ri, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxJournalSize))
	if err != nil {
		return ri, err
	}
	if len(b) >= maxJournalSize {
		return ri, fmt.Errorf("%d bytes or more, over the limit", maxJournalSize)
	}
	if err := json.Unmarshal(b, &ri); err != nil {
		return ri, err
	}
	if ri.SrcBucket == "" || ri.SrcKey == "" || ri.DstBucket == "" || ri.DstKey == "" || strings.HasSuffix(ri.SrcKey, "/") {
		return ri, fmt.Errorf("incomplete record")
	}
	if ok := m.o.ValidKey; ok != nil && (!ok(ri.SrcBucket, ri.SrcKey) || !ok(ri.DstBucket, ri.DstKey)) {
		return ri, fmt.Errorf("names an object outside the configured workspaces")
	}
	return ri, nil
}

package fusefs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// recoverJournals reloads the local copies left by a previous run. It
// publishes nothing: a dirty copy (changes no close published) waits as an
// interrupted upload cut to its durable length, for a resume within
// Lifespan. Clean ones still within Lifespan are kept for resuming; the
// rest is removed.
func (m *Manager) recoverJournals(ctx context.Context) error {
	c := m.cache
	ents, err := readDirNames(c.root, ".")
	if err != nil {
		return err
	}
	slices.Sort(ents)
	// Renames first: a copy's journal may follow one.
	for _, name := range ents {
		if id, ok := strings.CutSuffix(name, ".rename"); ok {
			m.recoverRename(ctx, id)
		}
	}
	haveJournal := map[string]bool{}
	for _, name := range ents {
		switch {
		case strings.HasSuffix(name, ".tmp"):
			c.root.Remove(name)
		case strings.HasSuffix(name, ".json"):
			id := strings.TrimSuffix(name, ".json")
			haveJournal[id] = true
			m.recoverOne(ctx, id)
		}
	}
	for _, name := range ents {
		if id, ok := strings.CutSuffix(name, ".data"); ok && !haveJournal[id] {
			c.root.Remove(name)
		}
	}
	return nil
}

// recoverOne handles the journal of one local copy.
func (m *Manager) recoverOne(ctx context.Context, id string) {
	c := m.cache
	log := m.log.With("id", id)
	j, err := m.trustJournal(id)
	if err != nil {
		log.Warn("journal not trusted; moved to conflicts", "path", filepath.Join(c.dir, journalName(id)), "reason", err)
		m.moveAside(id)
		return
	}
	log = log.With("bucket", j.Bucket, "key", j.Key)
	// Multipart uploads of a streaming upload the crash interrupted: the
	// copy waits for a resume (when dirty), these are never completed.
	var left []pendingUpload
	staged := false
	for _, u := range j.Uploads {
		// Recorded as staged (never without Options.Staging): any node may
		// be continuing it.
		ok, err := m.cache.stagedElsewhere(ctx, u.ID)
		if err != nil {
			log.Warn("cannot tell whether an interrupted upload is staged; left alone", "err", err)
			left = append(left, u)
			continue
		}
		if ok {
			staged = true
			continue
		}
		if err := m.ob.st.Abort(u.Bucket, u.Key, u.ID); err != nil {
			log.Warn("cannot abort an interrupted multipart upload", "err", err)
			left = append(left, u)
		}
	}
	if len(left) != len(j.Uploads) {
		j.Uploads = left
		if err := writeJournal(c.root, id, j); err != nil {
			log.Warn("cannot write journal", "err", err)
		}
	}
	if staged && j.Dirty {
		// The staged upload is the resume, the same through every node.
		c.root.Remove(dataName(id))
		c.root.Remove(journalName(id))
		log.Info("interrupted upload staged in the store; local copy dropped")
		return
	}
	f, err := openRegular(c.root, dataName(id), os.O_RDWR)
	if err != nil {
		if j.Dirty {
			log.Error("dirty journal without its data file", "err", err)
			m.moveAside(id)
		} else {
			c.root.Remove(journalName(id))
		}
		return
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		log.Error("cannot stat a local copy", "err", err)
		m.moveAside(id)
		return
	}
	e := &entry{id: id, c: c, f: f, user: j.User, bucket: j.Bucket, key: j.Key, baseETag: j.BaseETag, baseExists: j.BaseExists,
		size: j.Size, mtime: j.Mtime, mode: j.Mode, dirty: j.Dirty, complete: j.Complete,
		tailMode: j.TailMode, tailFrom: j.TailFrom, uploads: j.Uploads, lastUse: st.ModTime(),
		baseSizeUnknown: j.BaseExists, journaled: true}
	if j.Dirty {
		// Changes no close published: never uploaded here. The copy waits
		// as an interrupted upload, cut to what was durable.
		if time.Since(e.lastUse) >= m.o.Lifespan {
			f.Close()
			c.root.Remove(dataName(id))
			c.root.Remove(journalName(id))
			log.Info("interrupted upload not resumed within the lifespan; discarded", "size", st.Size())
			return
		}
		if e.mtime.IsZero() {
			e.mtime = st.ModTime()
		}
		e.interrupted = true
		n := min(j.Durable, st.Size())
		if j.TailMode && n <= j.TailFrom {
			// Nothing new survived: the object is all there is.
			f.Close()
			c.root.Remove(dataName(id))
			c.root.Remove(journalName(id))
			log.Info("interrupted append left nothing durable; discarded")
			return
		}
		if err := f.Truncate(n); err != nil {
			f.Close()
			log.Error("cannot cut an interrupted upload", "err", err)
			m.moveAside(id)
			return
		}
		e.size, e.durable = n, n
		if !j.TailMode {
			e.complete = true
		}
		e.fill.reset(n)
		m.register(e)
		c.save(e)
		e.account()
		log.Info("kept an interrupted upload for a resume", "size", n)
		return
	}
	if time.Since(e.lastUse) >= m.o.Lifespan || (j.Complete && st.Size() != j.Size) {
		f.Close()
		c.root.Remove(dataName(id))
		c.root.Remove(journalName(id))
		return
	}
	m.register(e)
}

// register adds a recovered entry to the index (the newest wins).
func (m *Manager) register(e *entry) {
	c := m.cache
	c.mu.Lock()
	old := c.byKey[objKey(e.bucket, e.key)]
	c.mu.Unlock()
	if old != nil {
		if old.lastUse.After(e.lastUse) && !e.dirty {
			c.mu.Lock()
			c.all[e] = struct{}{}
			c.mu.Unlock()
			c.drop(e)
			return
		}
		if old.dirty && !e.dirty {
			c.mu.Lock()
			c.all[e] = struct{}{}
			c.mu.Unlock()
			c.drop(e)
			return
		}
		c.forget(old)
	}
	c.mu.Lock()
	c.byKey[objKey(e.bucket, e.key)] = e
	c.all[e] = struct{}{}
	c.mu.Unlock()
}

// moveAside moves the files of a local copy to conflicts/.
func (m *Manager) moveAside(id string) {
	for _, name := range []string{dataName(id), journalName(id)} {
		if err := m.cache.root.Rename(name, filepath.Join(conflictsDir, name)); err != nil && !os.IsNotExist(err) {
			m.log.Error("cannot move a local copy to conflicts", "path", filepath.Join(m.cache.dir, name), "err", err)
		}
	}
}

// trustJournal reads the journal of id and checks it before anything is
// done with it: the name is an id newID could have made; the journal is a
// regular file of the daemon's user, under maxJournalSize, that parses;
// every bucket/key it names (its object and its pending multipart
// uploads) is accepted by Options.ValidKey; its data file, if any, is a
// regular file of the daemon's user. Anyone able to write in the cache
// directory could otherwise have recovery act on any object.
func (m *Manager) trustJournal(id string) (journal, error) {
	if !validID(id) {
		return journal{}, fmt.Errorf("file name %q is not a local copy id", journalName(id))
	}
	j, err := readJournal(m.cache.root, id)
	if err != nil {
		return j, err
	}
	if j.Bucket == "" || j.Key == "" {
		return j, fmt.Errorf("journal %s: no bucket or key", id)
	}
	if ok := m.o.ValidKey; ok != nil {
		if !ok(j.Bucket, j.Key) {
			return j, fmt.Errorf("journal %s: %s/%s is in no configured workspace", id, j.Bucket, j.Key)
		}
		for _, u := range j.Uploads {
			if !ok(u.Bucket, u.Key) {
				return j, fmt.Errorf("journal %s: upload to %s/%s, in no configured workspace", id, u.Bucket, u.Key)
			}
		}
	}
	if fi, err := m.cache.root.Lstat(dataName(id)); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); !fi.Mode().IsRegular() || !ok || int(st.Uid) != os.Geteuid() {
			return j, fmt.Errorf("data file %s is not a regular file of the daemon's user (%v)", dataName(id), fi.Mode())
		}
	}
	return j, nil
}

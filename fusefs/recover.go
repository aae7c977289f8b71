package fusefs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// recoverJournals reloads the local copies left by a previous run. It
// publishes nothing: a dirty copy (changes no close published) waits as an
// interrupted upload cut to its durable length, for a resume within
// Lifespan. Clean ones still within Lifespan are kept for resuming; the
// rest is removed.
func (m *Manager) recoverJournals(ctx context.Context) error {
	c := m.cache
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return err
	}
	haveJournal := map[string]bool{}
	for _, de := range ents {
		name := de.Name()
		switch {
		case strings.HasSuffix(name, ".tmp"):
			os.Remove(filepath.Join(c.dir, name))
		case strings.HasSuffix(name, ".json"):
			id := strings.TrimSuffix(name, ".json")
			haveJournal[id] = true
			m.recoverOne(ctx, id)
		}
	}
	for _, de := range ents {
		if id, ok := strings.CutSuffix(de.Name(), ".data"); ok && !haveJournal[id] {
			os.Remove(filepath.Join(c.dir, de.Name()))
		}
	}
	return nil
}

// recoverOne handles the journal of one local copy.
func (m *Manager) recoverOne(ctx context.Context, id string) {
	c := m.cache
	log := m.log.With("id", id)
	j, err := readJournal(c.dir, id)
	if err != nil {
		log.Warn("unreadable journal moved to conflicts", "err", err)
		m.moveAside(id)
		return
	}
	log = log.With("bucket", j.Bucket, "key", j.Key)
	// Multipart uploads of a streaming upload the crash interrupted: the
	// copy is uploaded whole again (when dirty), these are never completed.
	var left []pendingUpload
	for _, u := range j.Uploads {
		if err := m.ob.abortUpload(u.Bucket, u.Key, u.ID); err != nil {
			log.Warn("cannot abort an interrupted multipart upload", "err", err)
			left = append(left, u)
		}
	}
	if len(left) != len(j.Uploads) {
		j.Uploads = left
		if err := writeJournal(c.dir, id, j); err != nil {
			log.Warn("cannot write journal", "err", err)
		}
	}
	f, err := os.OpenFile(dataPath(c.dir, id), os.O_RDWR, 0)
	if err != nil {
		if j.Dirty {
			log.Error("dirty journal without its data file", "err", err)
			m.moveAside(id)
		} else {
			os.Remove(journalPath(c.dir, id))
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
	e := &entry{id: id, c: c, f: f, bucket: j.Bucket, key: j.Key, baseETag: j.BaseETag, baseExists: j.BaseExists,
		size: j.Size, mtime: j.Mtime, mode: j.Mode, dirty: j.Dirty, complete: j.Complete,
		tailMode: j.TailMode, tailFrom: j.TailFrom, uploads: j.Uploads, lastUse: st.ModTime()}
	if j.Dirty {
		// Changes no close published: never uploaded here. The copy waits
		// as an interrupted upload, cut to what was durable.
		if time.Since(e.lastUse) >= m.o.Lifespan {
			f.Close()
			os.Remove(dataPath(c.dir, id))
			os.Remove(journalPath(c.dir, id))
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
			os.Remove(dataPath(c.dir, id))
			os.Remove(journalPath(c.dir, id))
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
		e.mu.Lock()
		c.saveLocked(e)
		e.mu.Unlock()
		log.Info("kept an interrupted upload for a resume", "size", n)
		return
	}
	if time.Since(e.lastUse) >= m.o.Lifespan || (j.Complete && st.Size() != j.Size) {
		f.Close()
		os.Remove(dataPath(c.dir, id))
		os.Remove(journalPath(c.dir, id))
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
	dst := filepath.Join(m.cache.dir, "conflicts")
	for _, p := range []string{dataPath(m.cache.dir, id), journalPath(m.cache.dir, id)} {
		if err := os.Rename(p, filepath.Join(dst, filepath.Base(p))); err != nil && !os.IsNotExist(err) {
			m.log.Error("cannot move a local copy to conflicts", "path", p, "err", err)
		}
	}
}

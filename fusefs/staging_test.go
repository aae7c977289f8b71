package fusefs_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sftpgate/sftpgate/fusefs"
)

// memStaging is a fusefs.StagingStore in memory, shared by the managers
// of a test as the identity store is by the nodes of a cluster (the real
// one, auth's, is tested on SQLite and PostgreSQL in package auth).
type memStaging struct {
	mu   sync.Mutex
	recs map[string]fusefs.StagedUpload
	beat map[string]time.Time // by upload id: the owner's last sign of life
}

var _ fusefs.StagingStore = (*memStaging)(nil)

func newMemStaging() *memStaging {
	return &memStaging{recs: map[string]fusefs.StagedUpload{}, beat: map[string]time.Time{}}
}

func (s *memStaging) heldLocked(id string, lease time.Duration) bool {
	u := s.recs[id]
	return u.Owner != "" && time.Since(s.beat[id]) < lease
}

func (s *memStaging) RecordStagedUpload(ctx context.Context, u fusefs.StagedUpload) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.recs[u.UploadID]; ok && old.Owner != u.Owner {
		return fmt.Errorf("held by %q", old.Owner)
	}
	u.Parts = slices.Clone(u.Parts)
	u.Updated = time.Now()
	s.recs[u.UploadID], s.beat[u.UploadID] = u, time.Now()
	return nil
}

func (s *memStaging) StagedUploads(ctx context.Context, lease time.Duration) ([]fusefs.StagedUpload, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []fusefs.StagedUpload
	for id, u := range s.recs {
		u.Held = s.heldLocked(id, lease)
		out = append(out, u)
	}
	return out, nil
}

func (s *memStaging) StagedUpload(ctx context.Context, id string, lease time.Duration) (fusefs.StagedUpload, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.recs[id]
	u.Held = ok && s.heldLocked(id, lease)
	return u, ok, nil
}

func (s *memStaging) ClaimStagedUpload(ctx context.Context, id, owner string, lease time.Duration) (fusefs.StagedUpload, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.recs[id]
	if !ok || (u.Owner != owner && s.heldLocked(id, lease)) {
		return fusefs.StagedUpload{}, false, nil
	}
	u.Owner = owner
	s.recs[id], s.beat[id] = u, time.Now()
	return u, true, nil
}

func (s *memStaging) ReleaseStagedUpload(ctx context.Context, id, owner string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.recs[id]; ok && u.Owner == owner {
		u.Owner = ""
		s.recs[id] = u
	}
	return nil
}

func (s *memStaging) DeleteStagedUpload(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.recs, id)
	delete(s.beat, id)
	return nil
}

func (s *memStaging) TouchStagedUploads(ctx context.Context, owner string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, u := range s.recs {
		if u.Owner == owner {
			s.beat[id] = time.Now()
		}
	}
	return nil
}

func (s *memStaging) ExpiredStagedUploads(ctx context.Context, idle, lease time.Duration) ([]fusefs.StagedUpload, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []fusefs.StagedUpload
	for id, u := range s.recs {
		if time.Since(u.Updated) >= idle && !s.heldLocked(id, lease) {
			out = append(out, u)
		}
	}
	return out, nil
}

// staged returns the staged size of key's record, -1 when there is none.
func (s *memStaging) staged(bucket, key string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.recs {
		if u.Bucket == bucket && u.Key == key {
			return u.Size
		}
	}
	return -1
}

// TestStagedUploadOtherManager: two managers (two nodes) on one bucket
// and one staging store. An upload streamed through A and interrupted is
// shown through both at its staged size (whole parts), resumed through B
// without B reading the object, and completed as one object; no record
// and no multipart upload is left.
func TestStagedUploadOtherManager(t *testing.T) {
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
	data := pattern(31, 12<<20+123)
	key := a.key("s.bin")

	stageThrough(t, a, st, "s.bin", data, 0, int64(len(data)), 2*part)
	for _, w := range []*workspace{a, b} {
		waitStatSize(t, w, "s.bin", 2*part) // the staged parts
	}
	if _, err := statObject(bucket, key); !isNoSuchKey(err) {
		t.Fatalf("object while staged: got %v, want NoSuchKey", err)
	}
	if _, err := os.ReadFile(filepath.Join(b.dir, "s.bin")); err == nil {
		t.Errorf("read of the staged bytes through B: got nil, want an error (EREMOTE)")
	}

	resumeFrom(t, b, "s.bin", data, 2*part)
	if n := b.g.counter.objectGets(bucket, key); n != 0 {
		t.Errorf("object GETs through B: got %d, want 0 (the staged parts are never downloaded)", n)
	}
	if n := st.staged(bucket, key); n != -1 {
		t.Errorf("staging record after the resume: got %d bytes staged, want none", n)
	}
	checkNoUploadLeft(t, bucket, key)
	waitStatSize(t, a, "s.bin", int64(len(data)))
}

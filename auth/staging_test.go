package auth

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestStagedUploads records, advances, claims, releases, expires and
// deletes staged uploads on both stores.
func TestStagedUploads(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		clock := newFakeClock()
		s, _ := open(t, WithClock(clock.Now))
		const lease = 5 * time.Second
		mtime := time.Unix(1700000000, 123000000)
		u := StagedUpload{UploadID: "up1", Bucket: "b", Key: "alice/k.bin", BaseETag: "e0", BaseExists: true,
			Mtime: mtime, Mode: 0o640, Owner: "nodeA",
			Size: 5 << 20, Parts: []StagedPart{{Number: 1, Size: 5 << 20, ETag: "p1"}}}
		if err := s.RecordStagedUpload(ctx, u); err != nil {
			t.Fatalf("RecordStagedUpload: %v", err)
		}
		u.Size, u.Parts = 10<<20, append(u.Parts, StagedPart{Number: 2, Size: 5 << 20, ETag: "p2"})
		if err := s.RecordStagedUpload(ctx, u); err != nil {
			t.Fatalf("RecordStagedUpload (advance): %v", err)
		}
		got, ok, err := s.StagedUpload(ctx, "up1", lease)
		if err != nil || !ok {
			t.Fatalf("StagedUpload: %v, %v", ok, err)
		}
		if got.Bucket != "b" || got.Key != "alice/k.bin" || got.BaseETag != "e0" || !got.BaseExists || !got.Mtime.Equal(mtime) ||
			got.Mode != 0o640 || got.Size != 10<<20 || !slices.Equal(got.Parts, u.Parts) || got.Owner != "nodeA" || !got.Held {
			t.Fatalf("StagedUpload: got %+v, want %+v held", got, u)
		}
		if _, ok, err := s.StagedUpload(ctx, "nope", lease); ok || err != nil {
			t.Fatalf("StagedUpload of an unknown id: got %v, %v; want none", ok, err)
		}

		// Held by a live owner: nobody else claims it or advances it.
		if _, ok, err := s.ClaimStagedUpload(ctx, "up1", "nodeB", lease); ok || err != nil {
			t.Fatalf("claim of a held upload: got %v, %v; want refused", ok, err)
		}
		other := u
		other.Owner = "nodeB"
		if err := s.RecordStagedUpload(ctx, other); err == nil {
			t.Fatalf("RecordStagedUpload by another owner: got nil, want an error")
		}
		// Its owner refreshes it; past the lease without that it is free.
		clock.Advance(4 * time.Second)
		if err := s.TouchStagedUploads(ctx, "nodeA"); err != nil {
			t.Fatal(err)
		}
		clock.Advance(4 * time.Second)
		if _, ok, _ := s.ClaimStagedUpload(ctx, "up1", "nodeB", lease); ok {
			t.Fatalf("claim within the lease after a touch: got it, want refused")
		}
		clock.Advance(2 * time.Second)
		c, ok, err := s.ClaimStagedUpload(ctx, "up1", "nodeB", lease)
		if err != nil || !ok || c.Owner != "nodeB" || c.Size != 10<<20 || len(c.Parts) != 2 {
			t.Fatalf("claim after the lease: got %+v, %v, %v; want it, owned by nodeB", c, ok, err)
		}
		if err := s.RecordStagedUpload(ctx, u); err == nil {
			t.Fatalf("RecordStagedUpload by the former owner: got nil, want an error")
		}
		// Released: free at once.
		if err := s.ReleaseStagedUpload(ctx, "up1", "nodeA"); err != nil {
			t.Fatal(err)
		}
		if l, _ := s.StagedUploads(ctx, lease); len(l) != 1 || !l[0].Held {
			t.Fatalf("release by a non-owner: got %+v, want still held", l)
		}
		if err := s.ReleaseStagedUpload(ctx, "up1", "nodeB"); err != nil {
			t.Fatal(err)
		}
		l, err := s.StagedUploads(ctx, lease)
		if err != nil || len(l) != 1 || l[0].Held || l[0].Owner != "" {
			t.Fatalf("StagedUploads after release: got %+v, %v; want one, free", l, err)
		}
		if _, ok, _ := s.ClaimStagedUpload(ctx, "up1", "nodeC", lease); !ok {
			t.Fatalf("claim of a released upload: refused")
		}

		// Expiry: no progress for idle and not held.
		if e, _ := s.ExpiredStagedUploads(ctx, time.Minute, lease); len(e) != 0 {
			t.Fatalf("ExpiredStagedUploads: got %d, want none yet", len(e))
		}
		clock.Advance(2 * time.Minute)
		if err := s.TouchStagedUploads(ctx, "nodeC"); err != nil {
			t.Fatal(err)
		}
		if e, _ := s.ExpiredStagedUploads(ctx, time.Minute, lease); len(e) != 0 {
			t.Fatalf("ExpiredStagedUploads of a held upload: got %d, want none", len(e))
		}
		clock.Advance(lease + time.Second)
		e, err := s.ExpiredStagedUploads(ctx, time.Minute, lease)
		if err != nil || len(e) != 1 || e[0].UploadID != "up1" {
			t.Fatalf("ExpiredStagedUploads: got %+v, %v; want up1", e, err)
		}
		if err := s.DeleteStagedUpload(ctx, "up1"); err != nil {
			t.Fatal(err)
		}
		if l, _ := s.StagedUploads(ctx, lease); len(l) != 0 {
			t.Fatalf("StagedUploads after delete: got %d, want none", len(l))
		}
	})
}

package daemon

import (
	"context"
	"time"

	"github.com/sftpgate/sftpgate/auth"
	"github.com/sftpgate/sftpgate/fusefs"
)

// stagingLease is how long a node's staged uploads stay held once it
// gives no sign of life: as long as its row in the nodes registry.
const stagingLease = nodeGoneAfter

// stagingSource gives fusefs the staged uploads' records kept in the
// shared identity store (PostgreSQL): an interrupted upload is resumed
// through any node. It is wired only when the store is shared.
type stagingSource struct{ st *auth.Store }

var _ fusefs.StagingStore = stagingSource{}

func toAuthStaged(u fusefs.StagedUpload) auth.StagedUpload {
	parts := make([]auth.StagedPart, len(u.Parts))
	for i, p := range u.Parts {
		parts[i] = auth.StagedPart{Number: p.Number, Size: p.Size, ETag: p.ETag}
	}
	return auth.StagedUpload{UploadID: u.UploadID, Bucket: u.Bucket, Key: u.Key, BaseETag: u.BaseETag, BaseExists: u.BaseExists,
		Mtime: u.Mtime, Mode: u.Mode, Size: u.Size, Parts: parts, Owner: u.Owner, Updated: u.Updated, Held: u.Held}
}

func fromAuthStaged(u auth.StagedUpload) fusefs.StagedUpload {
	parts := make([]fusefs.StagedPart, len(u.Parts))
	for i, p := range u.Parts {
		parts[i] = fusefs.StagedPart{Number: p.Number, Size: p.Size, ETag: p.ETag}
	}
	return fusefs.StagedUpload{UploadID: u.UploadID, Bucket: u.Bucket, Key: u.Key, BaseETag: u.BaseETag, BaseExists: u.BaseExists,
		Mtime: u.Mtime, Mode: u.Mode, Size: u.Size, Parts: parts, Owner: u.Owner, Updated: u.Updated, Held: u.Held}
}

func fromAuthStagedList(l []auth.StagedUpload) []fusefs.StagedUpload {
	out := make([]fusefs.StagedUpload, len(l))
	for i, u := range l {
		out[i] = fromAuthStaged(u)
	}
	return out
}

// RecordStagedUpload implements fusefs.StagingStore.
func (s stagingSource) RecordStagedUpload(ctx context.Context, u fusefs.StagedUpload) error {
	return s.st.RecordStagedUpload(ctx, toAuthStaged(u))
}

// StagedUploads implements fusefs.StagingStore.
func (s stagingSource) StagedUploads(ctx context.Context, lease time.Duration) ([]fusefs.StagedUpload, error) {
	l, err := s.st.StagedUploads(ctx, lease)
	return fromAuthStagedList(l), err
}

// StagedUpload implements fusefs.StagingStore.
func (s stagingSource) StagedUpload(ctx context.Context, id string, lease time.Duration) (fusefs.StagedUpload, bool, error) {
	u, ok, err := s.st.StagedUpload(ctx, id, lease)
	return fromAuthStaged(u), ok, err
}

// ClaimStagedUpload implements fusefs.StagingStore.
func (s stagingSource) ClaimStagedUpload(ctx context.Context, id, owner string, lease time.Duration) (fusefs.StagedUpload, bool, error) {
	u, ok, err := s.st.ClaimStagedUpload(ctx, id, owner, lease)
	return fromAuthStaged(u), ok, err
}

// ReleaseStagedUpload implements fusefs.StagingStore.
func (s stagingSource) ReleaseStagedUpload(ctx context.Context, id, owner string) error {
	return s.st.ReleaseStagedUpload(ctx, id, owner)
}

// DeleteStagedUpload implements fusefs.StagingStore.
func (s stagingSource) DeleteStagedUpload(ctx context.Context, id string) error {
	return s.st.DeleteStagedUpload(ctx, id)
}

// TouchStagedUploads implements fusefs.StagingStore.
func (s stagingSource) TouchStagedUploads(ctx context.Context, owner string) error {
	return s.st.TouchStagedUploads(ctx, owner)
}

// ExpiredStagedUploads implements fusefs.StagingStore.
func (s stagingSource) ExpiredStagedUploads(ctx context.Context, idle, lease time.Duration) ([]fusefs.StagedUpload, error) {
	l, err := s.st.ExpiredStagedUploads(ctx, idle, lease)
	return fromAuthStagedList(l), err
}

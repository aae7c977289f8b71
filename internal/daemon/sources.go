package daemon

import (
	"context"
	"errors"

	"github.com/sftpgate/sftpgate/auth"
	"github.com/sftpgate/sftpgate/fusefs"
)

// grantSource gives fusefs the workspaces of a user from the identity
// store, on every call: grants added or revoked show up at the next refresh.
type grantSource struct{ st *auth.Store }

var _ fusefs.Grants = grantSource{}

// Workspaces implements fusefs.Grants. A user deleted meanwhile has none.
func (g grantSource) Workspaces(ctx context.Context, user string) ([]fusefs.Workspace, error) {
	acc, err := g.st.Access(ctx, user)
	if errors.Is(err, auth.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ws := make([]fusefs.Workspace, 0, len(acc))
	for _, a := range acc {
		ws = append(ws, fusefs.Workspace{Slug: a.Slug, Bucket: a.Bucket, Prefix: a.Prefix, ReadOnly: a.ReadOnly, Personal: a.Personal})
	}
	return ws, nil
}

// quotaSource gives fusefs the users' quotas kept in the identity store.
type quotaSource struct{ st *auth.Store }

var _ fusefs.Quotas = quotaSource{}

// Quota implements fusefs.Quotas.
func (q quotaSource) Quota(ctx context.Context, user string) (fusefs.Quota, error) {
	a, err := q.st.Quota(ctx, user)
	return fusefs.Quota{MaxBytes: a.MaxBytes, MaxFiles: a.MaxFiles, UsedBytes: a.UsedBytes, UsedFiles: a.UsedFiles, Computed: a.Computed}, err
}

// AddUsage implements fusefs.Quotas.
func (q quotaSource) AddUsage(ctx context.Context, user string, dBytes, dFiles int64) error {
	return q.st.AddUsage(ctx, user, dBytes, dFiles)
}

// SetUsage implements fusefs.Quotas.
func (q quotaSource) SetUsage(ctx context.Context, user string, bytes, files int64) error {
	return q.st.SetUsage(ctx, user, bytes, files)
}

// RecomputeUsage implements fusefs.Quotas.
func (q quotaSource) RecomputeUsage(ctx context.Context, user string) error {
	return q.st.RecomputeUsage(ctx, user)
}

// Owner implements fusefs.Quotas.
func (q quotaSource) Owner(ctx context.Context, bucket, key string) (string, error) {
	return q.st.PersonalOwner(ctx, bucket, key)
}

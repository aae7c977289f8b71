package fusefs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/minio/minio-go/v7"
)

// Quota is one user's limits over their personal workspaces (those whose
// prefix holds the user's name, Workspace.Personal) and what they use.
type Quota struct {
	// MaxBytes and MaxFiles are the limits; 0 means none.
	MaxBytes, MaxFiles int64
	// UsedBytes and UsedFiles count the objects under the user's personal
	// workspaces; meaningful only when Computed.
	UsedBytes, UsedFiles int64
	// Computed is false until a listing computed the usage.
	Computed bool
}

// Quotas keeps the users' quotas and usage where every gateway sees them
// (the identity store). A nil Options.Quotas means no quotas.
type Quotas interface {
	// Quota returns a user's limits and usage.
	Quota(ctx context.Context, user string) (Quota, error)
	// AddUsage adds deltas (maybe negative) to a computed usage, atomically.
	AddUsage(ctx context.Context, user string, dBytes, dFiles int64) error
	// SetUsage records a usage computed from a listing.
	SetUsage(ctx context.Context, user string, bytes, files int64) error
	// RecomputeUsage marks a usage as to be computed again.
	RecomputeUsage(ctx context.Context, user string) error
}

// Limited reports whether q sets any limit.
func (q Quota) Limited() bool { return q.MaxBytes > 0 || q.MaxFiles > 0 }

// over tells whether making an object size bytes long, where it was
// oldSize (existed: there was one), goes past q.
func (q Quota) over(size, oldSize int64, existed bool) error {
	used, files := q.UsedBytes, q.UsedFiles
	if existed {
		used -= oldSize
	} else {
		files++
	}
	if q.MaxBytes > 0 && used+size > q.MaxBytes {
		return fmt.Errorf("%w (limit %d bytes, %d in use)", ErrQuota, q.MaxBytes, q.UsedBytes)
	}
	if q.MaxFiles > 0 && !existed && files > q.MaxFiles {
		return fmt.Errorf("%w (limit %d files)", ErrQuota, q.MaxFiles)
	}
	return nil
}

// quotaUser returns the user whose quota counts the object bucket/key in
// this view: the view's user when it lies in one of their personal
// workspaces, "" otherwise (or without quotas).
func (v *view) quotaUser(bucket, key string) string {
	if v.quotas == nil || v.readOnly {
		return ""
	}
	v.gmu.Lock()
	defer v.gmu.Unlock()
	for _, s := range v.current {
		ws := v.spaces[s]
		ws.mu.Lock()
		in := ws.personal && !ws.revoked && ws.bucket == bucket && strings.HasPrefix(key, ws.prefix)
		ws.mu.Unlock()
		if in {
			return v.user
		}
	}
	return ""
}

// quota returns the view's user's quota, computing the usage from a
// listing of their personal workspaces when it is not computed yet and a
// limit needs it.
func (v *view) quota(ctx context.Context) (Quota, error) {
	q, err := v.quotas.Quota(ctx, v.user)
	if err != nil || q.Computed || !q.Limited() {
		return q, err
	}
	v.qmu.Lock()
	defer v.qmu.Unlock()
	if q, err = v.quotas.Quota(ctx, v.user); err != nil || q.Computed {
		return q, err
	}
	bytes, files, err := v.countPersonal(ctx)
	if err != nil {
		return q, err
	}
	if err := v.quotas.SetUsage(ctx, v.user, bytes, files); err != nil {
		return q, err
	}
	v.log.Info("fusefs: quota usage computed", "user", v.user, "bytes", bytes, "files", files)
	q.UsedBytes, q.UsedFiles, q.Computed = bytes, files, true
	return q, nil
}

// countPersonal adds up the objects under the user's personal workspaces
// (each prefix once, nested ones inside their parent), streaming the
// listing: no key list is kept. Directory markers do not count.
func (v *view) countPersonal(ctx context.Context) (bytes, files int64, err error) {
	wss, err := v.workspaces(ctx)
	if err != nil {
		return 0, 0, err
	}
	var places []loc
	for _, ws := range wss {
		ws.mu.Lock()
		if ws.personal && !ws.revoked {
			places = append(places, loc{bucket: ws.bucket, prefix: ws.prefix})
		}
		ws.mu.Unlock()
	}
	slices.SortFunc(places, func(a, b loc) int {
		if c := strings.Compare(a.bucket, b.bucket); c != 0 {
			return c
		}
		return strings.Compare(a.prefix, b.prefix)
	})
	var last *loc
	for i := range places {
		p := places[i]
		if last != nil && last.bucket == p.bucket && strings.HasPrefix(p.prefix, last.prefix) {
			continue // inside one already counted
		}
		last = &places[i]
		b, f, err := v.countPrefix(ctx, p.bucket, p.prefix)
		if err != nil {
			return 0, 0, err
		}
		bytes += b
		files += f
	}
	return bytes, files, nil
}

// countPrefix adds up the objects under prefix; a missing bucket holds none.
func (v *view) countPrefix(ctx context.Context, bucket, prefix string) (bytes, files int64, err error) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for oi := range v.ob.listAll(lctx, bucket, prefix) {
		if oi.Err != nil {
			var er minio.ErrorResponse
			if errors.As(oi.Err, &er) && er.Code == "NoSuchBucket" {
				return 0, 0, nil
			}
			return 0, 0, fmt.Errorf("quota: list %s/%s: %w", bucket, prefix, oi.Err)
		}
		if strings.HasSuffix(oi.Key, "/") {
			continue
		}
		bytes += oi.Size
		files++
	}
	return bytes, files, nil
}

// addUsage records a change of the user's usage; a failure is logged (a
// recompute repairs it), never returned: the change itself succeeded.
func (v *view) addUsage(ctx context.Context, user string, dBytes, dFiles int64) {
	if user == "" || (dBytes == 0 && dFiles == 0) {
		return
	}
	if err := v.quotas.AddUsage(ctx, user, dBytes, dFiles); err != nil {
		v.log.Error("fusefs: cannot record quota usage", "user", user, "bytes", dBytes, "files", dFiles, "err", err)
	}
}

// recompute asks for the user's usage to be listed again, after a change
// too wide to count here (a directory rename in or out of a personal
// workspace).
func (v *view) recompute(ctx context.Context, user string) {
	if user == "" {
		return
	}
	if err := v.quotas.RecomputeUsage(ctx, user); err != nil {
		v.log.Error("fusefs: cannot mark quota usage for recompute", "user", user, "err", err)
	}
}

// checkGrow fails with ErrQuota when making e end bytes long would take
// its quota owner past their quota. Only growth is checked.
func (v *view) checkGrow(ctx context.Context, e *entry, end int64, appending bool) error {
	e.mu.Lock()
	qv, size, baseSize, existed := e.qv, e.size, e.baseSize, e.baseExists
	e.mu.Unlock()
	if qv == nil {
		return nil
	}
	if appending {
		end += size
	}
	if end <= size {
		return nil
	}
	q, err := qv.quota(ctx)
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := q.over(max(end, size), baseSize, existed); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// setQuotaView records which view's user's quota counts the entry's
// object, as seen from v (nil: none).
func (e *entry) setQuotaView(v *view) {
	e.mu.Lock()
	bucket, key := e.bucket, e.key
	e.mu.Unlock()
	var qv *view
	if v.quotaUser(bucket, key) != "" {
		qv = v
	}
	e.mu.Lock()
	e.qv = qv
	e.mu.Unlock()
}

// pendingAt tells whether bucket/key has a local copy with changes not
// published yet.
func (c *cache) pendingAt(bucket, key string) bool {
	e := c.lookup(bucket, key)
	return e != nil && e.pending()
}

// counting tells whether the view's user's usage is kept (computed), so
// that a change must be added to it; without it, nothing is asked of the
// store for a delete or a rename.
func (v *view) counting(ctx context.Context) bool {
	q, err := v.quotas.Quota(ctx, v.user)
	return err == nil && q.Computed
}

package fusefs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sftpgate/sftpgate/fusefs/objstore"
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
	// Owner returns the user whose personal workspace holds bucket/key
	// (whose quota counts it, whoever writes it), "" when none.
	Owner(ctx context.Context, bucket, key string) (string, error)
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

// quotaKeeper applies the users' quotas for the whole manager: whose
// quota counts an object, the usage (listed when not kept yet), and its
// changes. A nil keeper (no Options.Quotas) counts nothing.
type quotaKeeper struct {
	q      Quotas
	grants Grants
	ob     *objects
	log    *slog.Logger

	// ownerTTL is how long an owner answer is reused (the grants TTL).
	ownerTTL time.Duration

	// mu serializes the listings that compute a usage (held across one,
	// never across a call into a mount).
	mu sync.Mutex

	// unchecked is when limit last logged an unreadable quota (UnixNano).
	unchecked atomic.Int64

	// ownersMu guards owners.
	ownersMu sync.Mutex
	// owners caches Owner by bucket and directory (see owner).
	owners map[ownerDir]ownerAnswer
}

// maxOwners bounds the directories whose owner is remembered.
const maxOwners = 1024

// ownerDir is a directory of a bucket: its key prefix, ending in "/" (""
// for the bucket's top).
type ownerDir struct{ bucket, dir string }

// ownerAnswer is a remembered Owner answer.
type ownerAnswer struct {
	user string
	at   time.Time
}

// owner returns the user whose quota counts bucket/key, "" when none (a
// store error is logged and counts nothing: a recompute repairs it).
//
// A personal workspace is a directory (its prefix ends in "/"), so every
// key directly in one directory has the same owner: the answer is reused
// for the directory's other keys for ownerTTL, the time grants are
// trusted anyway (a small-file upload asked the store once per file).
func (k *quotaKeeper) owner(ctx context.Context, bucket, key string) string {
	if k == nil {
		return ""
	}
	od := ownerDir{bucket: bucket, dir: key[:strings.LastIndexByte(key, '/')+1]}
	k.ownersMu.Lock()
	a, ok := k.owners[od]
	k.ownersMu.Unlock()
	if ok && time.Since(a.at) < k.ownerTTL {
		return a.user
	}
	at := time.Now()
	u, err := k.q.Owner(ctx, bucket, key)
	if err != nil {
		k.log.Error("cannot tell whose quota counts an object", "bucket", bucket, "key", key, "err", err)
		return ""
	}
	k.ownersMu.Lock()
	if k.owners == nil || len(k.owners) >= maxOwners {
		k.owners = map[ownerDir]ownerAnswer{}
	}
	k.owners[od] = ownerAnswer{user: u, at: at}
	k.ownersMu.Unlock()
	return u
}

// quota returns user's quota, computing the usage from a listing of
// their personal workspaces when it is not kept yet and a limit needs it.
func (k *quotaKeeper) quota(ctx context.Context, user string) (Quota, error) {
	if k == nil || user == "" {
		return Quota{}, nil
	}
	q, err := k.q.Quota(ctx, user)
	if err != nil || q.Computed || !q.Limited() {
		return q, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if q, err = k.q.Quota(ctx, user); err != nil || q.Computed {
		return q, err
	}
	bytes, files, err := k.countPersonal(ctx, user)
	if err != nil {
		return q, err
	}
	if err := k.q.SetUsage(ctx, user, bytes, files); err != nil {
		return q, err
	}
	k.log.Info("quota usage computed", "user", user, "bytes", bytes, "files", files)
	q.UsedBytes, q.UsedFiles, q.Computed = bytes, files, true
	return q, nil
}

// limit returns user's quota for a write, an upload or statfs to check
// against. When it cannot be read (the identity store is unreachable),
// the change goes on unchecked: the sessions already open keep working
// while the store is away, as their logins did. That is logged at most
// every quotaLogEvery; a recompute (admin user quota --recompute) repairs
// the usage the outage did not record.
func (k *quotaKeeper) limit(ctx context.Context, user string) Quota {
	q, err := k.quota(ctx, user)
	if err == nil {
		return q
	}
	now := time.Now().UnixNano()
	if last := k.unchecked.Load(); now-last >= int64(quotaLogEvery) && k.unchecked.CompareAndSwap(last, now) {
		k.log.Error("quota not checked: cannot read it; writes go on unchecked", "user", user, "err", err)
	}
	return Quota{}
}

// quotaLogEvery is how often limit logs that a quota could not be read.
const quotaLogEvery = 10 * time.Second

// countPersonal adds up the objects under user's personal workspaces
// (each prefix once, nested ones inside their parent), streaming the
// listing: no key list is kept. Directory markers do not count.
func (k *quotaKeeper) countPersonal(ctx context.Context, user string) (bytes, files int64, err error) {
	wss, err := k.grants.Workspaces(ctx, user)
	if err != nil {
		return 0, 0, fmt.Errorf("quota: grants of %s: %w", user, err)
	}
	var places []loc
	for _, w := range wss {
		if p, err := normPrefix(w.Prefix); err == nil && w.Personal && w.Bucket != "" {
			places = append(places, loc{bucket: w.Bucket, prefix: p})
		}
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
		b, f, err := k.countPrefix(ctx, p.bucket, p.prefix)
		if err != nil {
			return 0, 0, err
		}
		bytes += b
		files += f
	}
	return bytes, files, nil
}

// countPrefix adds up the objects under prefix; a missing bucket holds none.
func (k *quotaKeeper) countPrefix(ctx context.Context, bucket, prefix string) (bytes, files int64, err error) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for oi := range k.ob.st.List(lctx, bucket, objstore.ListOptions{Prefix: prefix, Recursive: true}).All() {
		if oi.Err != nil {
			if errors.Is(oi.Err, objstore.ErrNoSuchBucket) {
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

// counting tells whether user's usage is kept (computed), so that a change
// must be added to it; without it, a delete or a rename asks nothing more.
func (k *quotaKeeper) counting(ctx context.Context, user string) bool {
	if k == nil || user == "" {
		return false
	}
	q, err := k.q.Quota(ctx, user)
	return err == nil && q.Computed
}

// add records a change of user's usage; a failure is logged (a recompute
// repairs it), never returned: the change itself succeeded.
func (k *quotaKeeper) add(ctx context.Context, user string, dBytes, dFiles int64) {
	if k == nil || user == "" || (dBytes == 0 && dFiles == 0) {
		return
	}
	if err := k.q.AddUsage(ctx, user, dBytes, dFiles); err != nil {
		k.log.Error("cannot record quota usage", "user", user, "bytes", dBytes, "files", dFiles, "err", err)
	}
}

// recompute asks for user's usage to be listed again, after a change too
// wide to count here (a directory moved in or out of a personal
// workspace, a copy not uploaded yet renamed).
func (k *quotaKeeper) recompute(ctx context.Context, user string) {
	if k == nil || user == "" {
		return
	}
	if err := k.q.RecomputeUsage(ctx, user); err != nil {
		k.log.Error("cannot mark quota usage for recompute", "user", user, "err", err)
	}
}

// quotaReuse is how long checkGrow reuses the quota it read for a copy:
// a sequential upload grows its file at every write (4,096 writes per
// GiB), each was a query to the identity store (4 % of the daemon's CPU
// for an upload). The close checks the quota as it stands before it
// uploads, whatever the writes saw.
const quotaReuse = 250 * time.Millisecond

// checkGrow fails with ErrQuota when making e end bytes long (after its
// end when appending) would take its quota's owner past their quota. Only
// growth is checked.
func (k *quotaKeeper) checkGrow(ctx context.Context, e *entry, end int64, appending bool) error {
	if k == nil {
		return nil
	}
	e.mu.Lock()
	user, size, baseSize, existed := e.qUser, e.size, e.baseSize, e.baseExists
	q, seen := e.qSeen, e.qSeenAt
	e.mu.Unlock()
	if user == "" {
		return nil
	}
	if appending {
		end += size
	}
	if end <= size {
		return nil
	}
	if time.Since(seen) >= quotaReuse {
		q = k.limit(ctx, user)
		e.mu.Lock()
		e.qSeen, e.qSeenAt = q, time.Now()
		e.mu.Unlock()
	}
	if err := q.over(end, baseSize, existed); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// setQuotaOwner records whose quota counts the entry's object.
func (e *entry) setQuotaOwner(ctx context.Context, k *quotaKeeper) {
	if k == nil {
		return
	}
	e.mu.Lock()
	bucket, key := e.bucket, e.key
	e.mu.Unlock()
	user := k.owner(ctx, bucket, key)
	e.mu.Lock()
	e.qUser = user
	e.qSeenAt = time.Time{} // a new handle reads the quota afresh
	e.mu.Unlock()
}

// pendingAt tells whether bucket/key has a local copy with changes not
// published yet.
func (c *cache) pendingAt(bucket, key string) bool {
	e := c.lookup(bucket, key)
	return e != nil && e.pending()
}

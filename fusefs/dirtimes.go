package fusefs

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sftpgate/sftpgate/fusefs/objstore"
	"golang.org/x/sync/errgroup"
)

// Directory times. A directory's mtime is stored on its zero-byte marker
// "dir/" (X-Amz-Meta-Mtime, as for files; a marker without it shows its
// LastModified); a directory without a marker (implied by deeper keys)
// shows the mount's time until a chtimes gives it a marker. Lookups learn
// the time from the listing that already tells whether the name is a
// directory; listings, which only see common prefixes, read the times of
// the directories the view does not know yet in sweeps (below), and the
// inodes remember them.

// dirMarker reports whether prefix (ending in "/") is a directory, a
// marker or any key below it, and the marker's mtime (zero when there is
// no marker), with one listing request.
func (o *objects) dirMarker(ctx context.Context, bucket, prefix string) (bool, time.Time, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for oi := range o.st.List(ctx, bucket, objstore.ListOptions{Prefix: prefix, MaxKeys: 2, WithMetadata: true}).All() {
		if oi.Err != nil {
			if isNotFound(oi.Err) {
				return false, time.Time{}, nil
			}
			return false, time.Time{}, fmt.Errorf("list %s/%s: %w", bucket, prefix, oi.Err)
		}
		if oi.Key == prefix {
			return true, infoFrom(oi.Info).Mtime, nil
		}
		return true, time.Time{}, nil
	}
	return false, time.Time{}, ctx.Err()
}

// Listings read the marker times of the directories they show in sweeps:
// the first directory of a listing that the view does not know yet lists
// up to markerSweep directories from it on (one request), settles what it
// can from one recursive listing page (listedMarkers, one request) and
// reads the other markers markerConcurrency at a time; the next entries of
// the listing find their time in the parent's sweep.
const (
	markerSweep       = 1000
	markerConcurrency = 16
	// markerFresh is how long a sweep's times are used.
	markerFresh = 10 * time.Second
)

// markerTimes are the marker times of one sweep, by marker key.
type markerTimes struct {
	at    time.Time
	times map[string]time.Time
}

// markerMtime returns the time of the directory whose marker key is key
// ("parent/name/"), a child of d seen in a listing: the marker's
// X-Amz-Meta-Mtime or LastModified, or the mount's time when there is no
// marker or it cannot be read.
func (d *dirNode) markerMtime(ctx context.Context, key string) time.Time {
	v := d.ws.v
	if !strings.HasSuffix(key, "/") {
		return v.born
	}
	d.mu.Lock()
	if s := d.sweep; s != nil && time.Since(s.at) < markerFresh {
		if mt, ok := s.times[key]; ok {
			delete(s.times, key)
			d.mu.Unlock()
			return mt
		}
	}
	d.mu.Unlock()
	l, err := d.ws.where(ctx)
	if err != nil {
		return v.born
	}
	parent := key[:strings.LastIndex(strings.TrimSuffix(key, "/"), "/")+1]
	s := v.sweepMarkers(ctx, l.bucket, parent, key)
	mt, ok := s.times[key]
	delete(s.times, key)
	if ctx.Err() == nil { // an interrupted sweep is not kept for the next entries
		d.mu.Lock()
		d.sweep = s
		d.mu.Unlock()
	}
	if !ok {
		return v.born
	}
	return mt
}

// sweepMarkers reads the times of the marker first and of the directories
// listed after it under parent, up to markerSweep of them. Directories
// without a marker, or whose marker could not be read, get the mount's time.
func (v *view) sweepMarkers(ctx context.Context, bucket, parent, first string) *markerTimes {
	keys := []string{first}
	lctx, cancel := context.WithCancel(ctx)
	seen := 0
	for oi := range v.ob.st.List(lctx, bucket, objstore.ListOptions{Prefix: parent, StartAfter: first, MaxKeys: markerSweep}).All() {
		seen++
		if oi.Err != nil || seen > 2*markerSweep || len(keys) >= markerSweep {
			break
		}
		if strings.HasSuffix(oi.Key, "/") && oi.Key != first && oi.Key != parent {
			keys = append(keys, oi.Key)
		}
	}
	cancel()
	times := make([]time.Time, len(keys))
	known := v.listedMarkers(ctx, bucket, parent, keys, times)
	var failed atomic.Int64
	var firstErr atomic.Value
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(markerConcurrency)
	for i, k := range keys {
		if known[i] {
			continue
		}
		g.Go(func() error {
			times[i] = v.born
			info, err := v.ob.stat(gctx, bucket, k)
			switch {
			case err == nil && !info.Mtime.IsZero():
				times[i] = info.Mtime
			case err != nil && !isNotFound(err):
				if failed.Add(1) == 1 {
					firstErr.Store(err)
				}
			}
			return nil
		})
	}
	_ = g.Wait()
	if n := failed.Load(); n > 0 {
		v.log.Warn("reading directory times", "bucket", bucket, "prefix", parent, "failed", n, "err", firstErr.Load())
	}
	out := &markerTimes{at: time.Now(), times: make(map[string]time.Time, len(keys))}
	for i, k := range keys {
		out.times[k] = times[i]
	}
	return out
}

// listedMarkers reads the times of the markers keys[1:] from one page of
// a recursive listing with metadata that starts after keys[0]: when the
// directories hold few keys (empty ones hold only their marker), it finds
// most of them in one request. A marker sorts before every other key of
// its directory, so a directory whose first listed key is not its marker
// has none (it shows the mount's time). It fills times and reports which
// it settled; a marker listed without X-Amz-Meta-Mtime is left to a HEAD.
func (v *view) listedMarkers(ctx context.Context, bucket, parent string, keys []string, times []time.Time) []bool {
	known := make([]bool, len(keys))
	if len(keys) < 2 {
		return known
	}
	idx := make(map[string]int, len(keys))
	for i, k := range keys[1:] {
		idx[k] = i + 1
	}
	last := keys[len(keys)-1]
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := 0
	for oi := range v.ob.st.List(ctx, bucket, objstore.ListOptions{Prefix: parent, StartAfter: keys[0], Recursive: true, WithMetadata: true, MaxKeys: maxListPage}).All() {
		n++
		if oi.Err != nil || n > maxListPage || oi.Key > last {
			break
		}
		rest := strings.TrimPrefix(oi.Key, parent)
		slash := strings.IndexByte(rest, '/')
		if slash < 0 {
			continue // a file next to the directories
		}
		dir := parent + rest[:slash+1]
		i, ok := idx[dir]
		if !ok || known[i] {
			continue
		}
		delete(idx, dir) // only the first key of a directory tells
		switch {
		case oi.Key != dir:
			times[i] = v.born
			known[i] = true
		case oi.Meta(metaMtime) != "":
			times[i] = infoFrom(oi.Info).Mtime
			known[i] = true
		}
	}
	return known
}

// maxListPage is the most keys one listing request returns.
const maxListPage = 1000

// dirChild is child for a directory. info.Mtime, when set, is the time a
// lookup found (it replaces what the inode knew); when zero (a listing
// entry), the inode's time is used, or the marker's for a new inode.
func (d *dirNode) dirChild(ctx context.Context, name string, info objInfo, ro bool, out *fuse.EntryOut) *fs.Inode {
	v := d.ws.v
	mt := info.Mtime
	var known *dirNode
	ch := d.GetChild(name)
	if ch != nil {
		if op, ok := ch.Operations().(*dirNode); ok && op.ws == d.ws {
			known = op
		}
	}
	switch {
	case known != nil:
		known.mu.Lock()
		if mt.IsZero() {
			mt = known.mtime
		} else {
			known.mtime = mt
		}
		known.mu.Unlock()
	case mt.IsZero():
		mt = d.markerMtime(ctx, info.Key)
	}
	v.fillDirAttr(&out.Attr, mt, ro)
	out.SetEntryTimeout(v.attrTTL)
	out.SetAttrTimeout(v.attrTTL)
	if known != nil {
		return ch
	}
	return d.NewInode(ctx, &dirNode{ws: d.ws, mtime: mt}, fs.StableAttr{Mode: fuse.S_IFDIR})
}

// storeMtime writes the directory's marker with mtime (creating it when
// the directory was implied). A workspace's own directory is not stored
// (its prefix may be empty, and the session root shows it from the mount):
// its time is only kept in memory, while the mount lives.
func (d *dirNode) storeMtime(ctx context.Context, mtime time.Time) error {
	l, prefix, err := d.where(ctx, true)
	if err != nil || d.wsRoot {
		return err
	}
	return d.ws.v.ob.putMarker(ctx, l.bucket, prefix, mtime)
}

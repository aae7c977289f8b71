package fusefs

import (
	"context"
	"strings"
	"time"

	"github.com/sftpgate/sftpgate/fusefs/objstore"
)

// maxKnown bounds the names a directory's known content holds; a larger
// directory is not remembered.
const maxKnown = maxSeen

// dirKnown is what this view knows of a directory's content: at time at,
// the store held no name under bucket/prefix but those in names (to which
// every name this view adds since is added, whether or not the add
// succeeds). Within the attribute TTL from at, a lookup of another name
// is answered "absent" without asking the store: a name written through
// another node may stay invisible here for at most that TTL, as with the
// kernel's own negative entries. That is only done in a directory this
// view writes into (active: made by it, or a name added since the
// listing): one only read shows what others write as soon as the kernel
// asks.
type dirKnown struct {
	at     time.Time
	bucket string
	prefix string
	names  map[string]struct{}
	active bool
}

// setKnown records the directory's content as listed or created at at,
// unless a name was added through this view since gen was read; active
// tells whether it answers lookups before a name is added (see dirKnown).
func (d *dirNode) setKnown(at time.Time, gen uint64, bucket, prefix string, names map[string]struct{}, active bool) {
	if len(names) > maxKnown || time.Since(at) >= d.ws.v.attrTTL {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.addGen != gen {
		return
	}
	d.known = &dirKnown{at: at, bucket: bucket, prefix: prefix, names: names, active: active}
}

// knownGen returns the count of names added through this view so far,
// for setKnown.
func (d *dirNode) knownGen() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addGen
}

// adding notes that name is about to be added to the directory (create,
// mkdir or the target of a rename), before the store is asked.
func (d *dirNode) adding(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.addGen++
	if d.known == nil {
		return
	}
	if len(d.known.names) >= maxKnown {
		d.known = nil
		return
	}
	d.known.names[name] = struct{}{}
	d.known.active = true
}

// What knownAbsent knows of a name.
const (
	knownNot     = iota // nothing: the store must be asked
	knownMissing        // absent
	knownStale          // the directory's content was known, the TTL passed
)

// found notes that a lookup found name in the store, after what the
// directory's known content was read.
func (d *dirNode) found(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.known == nil {
		return
	}
	if len(d.known.names) >= maxKnown {
		d.known = nil
		return
	}
	d.known.names[name] = struct{}{}
}

// knownAbsent tells whether name is known to be absent from the store
// under bucket/prefix (this directory's location now) within the TTL.
// Local copies are not considered: the caller checks them.
// For knownMissing, it also returns when the content was known.
func (d *dirNode) knownAbsent(bucket, prefix, name string) (int, time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := d.known
	switch {
	case k == nil:
		return knownNot, time.Time{}
	case k.bucket != bucket || k.prefix != prefix:
		d.known = nil
		return knownNot, time.Time{}
	case !k.active:
		return knownNot, time.Time{}
	}
	if _, ok := k.names[name]; ok {
		return knownNot, time.Time{}
	}
	if time.Since(k.at) >= d.ws.v.attrTTL {
		if d.relisting {
			return knownNot, time.Time{}
		}
		d.relisting = true
		return knownStale, time.Time{}
	}
	return knownMissing, k.at
}

// lookupAbsent reports whether name (key under bucket/prefix) is absent
// without asking the store for it: the directory's content is known (see
// dirKnown) and the name has no local copy. A directory whose known
// content is out of date (one this view creates files in, for more than
// the TTL) is listed again, one request for up to maxKnown names, instead
// of a HEAD and a listing per name. It also returns when the content was
// known (what a following create may rely on).
func (d *dirNode) lookupAbsent(ctx context.Context, bucket, prefix, name, key string) (bool, time.Time) {
	v := d.ws.v
	kn, at := d.knownAbsent(bucket, prefix, name)
	switch kn {
	case knownNot:
		return false, at
	case knownStale:
		d.relist(ctx, bucket, prefix)
		if kn, at = d.knownAbsent(bucket, prefix, name); kn != knownMissing {
			return false, at
		}
	}
	return v.cache.lookup(bucket, key) == nil, at
}

// relist lists the directory again, for its known content; d.relisting
// was set by knownAbsent and is cleared here. A failed or too long
// listing forgets the content.
func (d *dirNode) relist(ctx context.Context, bucket, prefix string) {
	at, gen := time.Now(), d.knownGen()
	names, ok := d.listNames(ctx, bucket, prefix)
	d.mu.Lock()
	d.relisting = false
	d.known = nil
	d.mu.Unlock()
	if ok {
		d.setKnown(at, gen, bucket, prefix, names, true)
	}
}

// listNames returns the names under bucket/prefix, one level; ok is false
// when the listing failed, holds more than maxKnown names or a key that
// cannot be a file name.
func (d *dirNode) listNames(ctx context.Context, bucket, prefix string) (map[string]struct{}, bool) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	names := map[string]struct{}{}
	for e := range d.ws.v.ob.st.List(ctx, bucket, objstore.ListOptions{Prefix: prefix}).All() {
		if e.Err != nil {
			return nil, false
		}
		rest := strings.TrimPrefix(e.Key, prefix)
		if rest == "" {
			continue // the directory's own marker
		}
		name := strings.TrimSuffix(rest, "/")
		if checkName(name) != nil || len(names) >= maxKnown {
			return nil, false
		}
		names[name] = struct{}{}
	}
	return names, ctx.Err() == nil
}

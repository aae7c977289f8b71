package fusefs

import "time"

// maxKnown bounds the names a directory's known content holds; a larger
// directory is not remembered.
const maxKnown = maxSeen

// dirKnown is what this view knows of a directory's content: at time at,
// the store held no name under bucket/prefix but those in names (to which
// every name this view adds since is added, whether or not the add
// succeeds). Within the attribute TTL from at, a lookup of another name
// is answered "absent" without asking the store: a name written through
// another node may stay invisible here for at most that TTL, as with the
// kernel's own negative entries.
type dirKnown struct {
	at     time.Time
	bucket string
	prefix string
	names  map[string]struct{}
}

// setKnown records the directory's content as listed or created at at,
// unless a name was added through this view since gen was read.
func (d *dirNode) setKnown(at time.Time, gen uint64, bucket, prefix string, names map[string]struct{}) {
	if len(names) > maxKnown || time.Since(at) >= d.ws.v.attrTTL {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.addGen != gen {
		return
	}
	d.known = &dirKnown{at: at, bucket: bucket, prefix: prefix, names: names}
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
}

// knownAbsent reports whether name is known to be absent from the store
// under bucket/prefix (this directory's location now) within the TTL.
// Local copies are not considered: the caller checks them.
func (d *dirNode) knownAbsent(bucket, prefix, name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := d.known
	if k == nil {
		return false
	}
	if k.bucket != bucket || k.prefix != prefix || time.Since(k.at) >= d.ws.v.attrTTL {
		d.known = nil
		return false
	}
	_, ok := k.names[name]
	return !ok
}

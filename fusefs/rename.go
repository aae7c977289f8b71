package fusefs

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/sftpgate/sftpgate/fusefs/objstore"
	"golang.org/x/sync/errgroup"
)

// Rename flags of renameat2(2).
const (
	renameNoReplace = 1
	renameExchange  = 2
	renameWhiteout  = 4
)

var _ fs.NodeRenamer = (*dirNode)(nil)

// Rename moves a file (server-side copy and delete; a file with unsent
// changes just changes its target key) or a directory (every key under
// it, copied in parallel, then deleted). RENAME_NOREPLACE is honoured;
// RENAME_EXCHANGE and RENAME_WHITEOUT are EINVAL.
func (d *dirNode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if flags&(renameExchange|renameWhiteout) != 0 {
		return syscall.EINVAL
	}
	nd, ok := newParent.(*dirNode)
	if !ok {
		return syscall.EROFS // the root of the view holds only workspaces
	}
	if err := checkName(newName); err != nil {
		return d.errno(err)
	}
	sl, sp, err := d.where(ctx, true)
	if err != nil {
		return d.errno(err)
	}
	dl, dp, err := nd.where(ctx, true)
	if err != nil {
		return d.errno(err)
	}
	v := d.ws.v
	src, dst := sp+name, dp+newName
	if sl.bucket == dl.bucket && src == dst {
		return 0
	}
	nd.adding(newName)
	if err := checkKey(dst + "/"); err != nil {
		return d.errno(err)
	}
	skind, sinfo, err := v.resolve(ctx, sl.bucket, src)
	if err != nil {
		return d.errno(err)
	}
	if skind == kindNone {
		return syscall.ENOENT
	}
	if skind == kindDir && sl.bucket == dl.bucket && strings.HasPrefix(dst+"/", src+"/") {
		return syscall.EINVAL // into itself
	}
	dkind, dinfo, err := v.resolve(ctx, dl.bucket, dst)
	if err != nil {
		return d.errno(err)
	}
	if dkind != kindNone && flags&renameNoReplace != 0 {
		return syscall.EEXIST
	}
	switch {
	case skind == kindFile && dkind == kindDir:
		return syscall.EISDIR
	case skind == kindDir && dkind == kindFile:
		return syscall.ENOTDIR
	case skind == kindDir && dkind == kindDir:
		has, err := v.ob.st.HasChildren(ctx, dl.bucket, dst+"/", true)
		if err != nil {
			return d.errno(err)
		}
		if has {
			return syscall.ENOTEMPTY
		}
	}
	// Whose quotas count the source and the destination, when their usage
	// is kept. A copy not published yet is not in any usage: leave the
	// count to a listing rather than guess.
	qk := v.cache.qk
	sOwner, dOwner := qk.owner(ctx, sl.bucket, src+"/"), qk.owner(ctx, dl.bucket, dst+"/")
	if skind == kindFile {
		sOwner, dOwner = qk.owner(ctx, sl.bucket, src), qk.owner(ctx, dl.bucket, dst)
	}
	sq, dq := sOwner, dOwner
	if !qk.counting(ctx, sq) {
		sq = ""
	}
	if !qk.counting(ctx, dq) {
		dq = ""
	}
	local := v.cache.pendingAt(sl.bucket, src) || v.cache.pendingAt(dl.bucket, dst)
	if skind == kindFile {
		err = v.renameFile(ctx, sl.bucket, src, dl.bucket, dst, sinfo)
	} else {
		err = v.renameDir(ctx, sl.bucket, src+"/", dl.bucket, dst+"/")
	}
	if err != nil {
		qk.recompute(ctx, sq) // a part may have moved
		qk.recompute(ctx, dq)
		return d.errno(err)
	}
	// The local copies that moved are counted by their new owner.
	switch {
	case skind == kindFile:
		if e := v.cache.lookup(dl.bucket, dst); e != nil {
			e.setQuotaOwner(ctx, qk)
		}
	case sOwner != dOwner:
		for _, e := range v.cache.under(dl.bucket, dst+"/") {
			e.setQuotaOwner(ctx, qk)
		}
	}
	switch {
	case sq == "" && dq == "":
	case local || skind == kindDir && sq != dq:
		qk.recompute(ctx, sq)
		qk.recompute(ctx, dq)
	case skind == kindFile:
		if dkind == kindFile {
			qk.add(ctx, dq, -dinfo.Size, -1)
		}
		qk.add(ctx, sq, -sinfo.Size, -1)
		qk.add(ctx, dq, sinfo.Size, 1)
	}
	if ch := nd.GetChild(newName); ch != nil {
		if fn, ok := ch.Operations().(*fileNode); ok && dkind == kindFile {
			fn.gone.Store(true)
		}
	}
	return 0
}

// renameFile moves one file.
func (v *view) renameFile(ctx context.Context, sb, sk, db, dk string, info objInfo) error {
	e := v.cache.lookup(sb, sk)
	if e != nil {
		e.upMu.Lock()
		defer e.upMu.Unlock()
		if e.pending() {
			if err := e.completeNow(ctx); err != nil {
				return err
			}
			return v.renamePending(ctx, e, sb, sk, db, dk)
		}
	}
	id := ""
	if e != nil {
		id = e.id
	}
	etag, done, err := v.moveObject(ctx, sb, sk, db, dk, info.Size, id)
	if err != nil {
		return err
	}
	defer done()
	if e != nil {
		v.cache.rekey(e, db, dk, etag, true)
	} else if old := v.cache.lookup(db, dk); old != nil {
		v.cache.forget(old)
	}
	return nil
}

// moveObject renames an object: a server-side copy and a delete, recorded
// first so that a crash between them is finished or undone at the next
// start (renamelog.go). entry is the local copy that follows, "" none;
// the caller calls done once that copy's journal names the new key.
func (v *view) moveObject(ctx context.Context, sb, sk, db, dk string, size int64, entry string) (etag string, done func(), err error) {
	id, err := v.cache.beginRename(ctx, renameIntent{SrcBucket: sb, SrcKey: sk, DstBucket: db, DstKey: dk, Entry: entry})
	if err != nil {
		return "", nil, err
	}
	done = func() { v.cache.endRename(id) }
	if etag, err = v.ob.st.Copy(ctx, sb, sk, db, dk, size, nil); err == nil {
		err = v.ob.st.Remove(ctx, sb, sk)
	}
	if err != nil {
		done()
		return "", nil, err
	}
	return etag, done, nil
}

// renamePending moves a file whose copy holds changes no close published
// yet: its published object, if any, moves server-side, and the copy is
// retargeted, so the next successful close publishes at the new key. The
// destination's own object is replaced. The caller holds e.upMu.
func (v *view) renamePending(ctx context.Context, e *entry, sb, sk, db, dk string) error {
	if e.published() {
		sinfo, err := v.ob.stat(ctx, sb, sk)
		switch {
		case err == nil:
			etag, done, err := v.moveObject(ctx, sb, sk, db, dk, sinfo.Size, e.id)
			if err != nil {
				return err
			}
			v.cache.rekey(e, db, dk, etag, true)
			done()
			return nil
		case !isNotFound(err):
			return err
		}
	}
	if err := v.ob.st.Remove(ctx, db, dk); err != nil && !isNotFound(err) {
		return err
	}
	v.cache.rekey(e, db, dk, "", false)
	return nil
}

// renameDir moves every key under sp to dp: copies first (bounded
// parallel workers), then deletes the sources in batches, so a failure
// leaves the source complete. Local copies under sp follow.
func (v *view) renameDir(ctx context.Context, sb, sp, db, dp string) error {
	entries := v.cache.under(sb, sp)
	slices.SortFunc(entries, func(a, b *entry) int { return strings.Compare(a.id, b.id) })
	for _, e := range entries {
		e.upMu.Lock()
		defer e.upMu.Unlock()
	}
	for _, e := range entries {
		if e.pending() {
			if err := e.completeNow(ctx); err != nil {
				return err
			}
		}
	}

	// lctx stops the listing when it fails; g's context, when a copy does.
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(lctx)
	g.SetLimit(max(1, v.ob.concurrency*2))
	var listErr error
	for oi := range v.ob.st.List(gctx, sb, objstore.ListOptions{Prefix: sp, Recursive: true}).All() {
		if oi.Err != nil {
			listErr = fmt.Errorf("list %s/%s: %w", sb, sp, oi.Err)
			cancel()
			break
		}
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			_, err := v.ob.st.Copy(gctx, sb, oi.Key, db, dp+strings.TrimPrefix(oi.Key, sp), oi.Size, nil)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if listErr != nil {
		return listErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	if err := v.ob.st.RemovePrefix(ctx, sb, sp); err != nil {
		return err
	}
	for _, e := range entries {
		key, etag, exists, lazy := e.base()
		if lazy {
			// Its lazy fetch would need the old object's ETag at the new key.
			v.cache.forget(e)
			continue
		}
		if strings.HasPrefix(key, sp) {
			v.cache.rekey(e, db, dp+strings.TrimPrefix(key, sp), etag, exists)
		}
	}
	return nil
}

package sftpd

import (
	"io/fs"
	"os"
	"path"

	"github.com/pkg/sftp"

	"github.com/sftpgate/sftpgate/internal/authapi"
)

// need is what an operation does to a path, for the scope check.
type need int

const (
	needStat      need = iota // stat, lstat, list, statvfs
	needRead                  // read a file's contents
	needWrite                 // create, write, truncate, setstat, mkdir, delete
	needReadWrite             // open for reading and writing
	needRename                // rename: both names, in one writable scope (allowRename)
)

var (
	// errScopeHidden is the status of a path outside the token's scopes:
	// for the session it does not exist.
	errScopeHidden = &statusError{code: sftp.ErrSSHFxNoSuchFile, msg: "no such file"}
	// errScopeDenied is the status of an operation the token's scopes do
	// not allow on a path they show.
	errScopeDenied = &statusError{code: sftp.ErrSSHFxPermissionDenied, msg: "permission denied: outside the token's scope"}
)

// checkScope says whether the session's token scopes allow n on the
// session path p: nil, errScopeHidden for a path the scopes do not show,
// or errScopeDenied. The directories on the way to a scope ("/", the
// workspace, …) allow only needStat. An unscoped session allows
// everything (the grants still apply, on the mount). A path outside the
// scopes is errScopeHidden, except for a change in a directory on the way
// to a scope (errScopeDenied, as in a read-only directory).
func checkScope(scopes authapi.Scopes, p string, n need) error {
	a, read, write := scopes.Lookup(p)
	switch a {
	case authapi.ScopeHidden:
		if n != needStat && n != needRead {
			// A change in a directory the session sees (on the way to a
			// scope) is refused as in any read-only directory, whether
			// the name exists or not.
			if pa, _, _ := scopes.Lookup(path.Dir(p)); pa == authapi.ScopeParent {
				return errScopeDenied
			}
		}
		return errScopeHidden
	case authapi.ScopeParent:
		if n == needStat {
			return nil
		}
		return errScopeDenied
	}
	ok := false
	switch n {
	case needStat:
		ok = read || write
	case needRead:
		ok = read
	case needWrite:
		ok = write
	case needReadWrite:
		ok = read && write
	}
	if !ok {
		return errScopeDenied
	}
	return nil
}

// allow is the path check every request that takes a path runs first,
// before touching the file system: the name rules (checkPath), then the
// token's scopes.
func (h *handlers) allow(p string, n need) error {
	if err := checkPath(p); err != nil {
		return err
	}
	return checkScope(h.sess.conn.scopes, p, n)
}

// allowRename checks both names of a rename: the name rules, and that one
// writable scope holds both strictly inside it (a rename never crosses a
// scope's edge).
func (h *handlers) allowRename(from, to string) error {
	if err := h.allow(from, needWrite); err != nil {
		return err
	}
	if err := checkPath(to); err != nil {
		return err
	}
	if !h.sess.conn.scopes.SameWritable(from, to) {
		return errScopeDenied
	}
	return nil
}

// scopedInfo shows fi, the entry at session path p, as the scopes let the
// session use it: without write permission bits where the scopes allow
// no write (the directories on the way to a scope, read-only scopes).
func scopedInfo(scopes authapi.Scopes, p string, fi os.FileInfo) os.FileInfo {
	if !scopes.Scoped() {
		return fi
	}
	if _, _, write := scopes.Lookup(p); write {
		return fi
	}
	return readOnlyInfo{fi}
}

// readOnlyInfo is a FileInfo without write permission bits.
type readOnlyInfo struct{ os.FileInfo }

// Mode returns the mode without its write bits.
func (r readOnlyInfo) Mode() fs.FileMode { return r.FileInfo.Mode() &^ 0o222 }

// visible reports whether the entry name of the directory at session path
// dir is shown to the session.
func visible(scopes authapi.Scopes, dir, name string) bool {
	a, _, _ := scopes.Lookup(path.Join(dir, name))
	return a != authapi.ScopeHidden
}

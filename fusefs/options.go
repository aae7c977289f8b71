package fusefs

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/sftpgate/sftpgate/fusefs/objstore"
)

// Workspace is one workspace as seen by one user.
type Workspace struct {
	// Slug is the directory name of the workspace in `/` of the view.
	Slug string
	// Bucket holds the workspace's objects; it is created on first write.
	Bucket string
	// Prefix is the key prefix of the workspace, {user} already expanded;
	// it is normalized ("" or "a/b/").
	Prefix string
	// ReadOnly refuses every change with EROFS.
	ReadOnly bool
	// Personal marks the user's own workspace (its prefix was made from
	// the user's name): its objects count in the user's quota.
	Personal bool
}

// Grants tells which workspaces a user may see. It is asked again every
// GrantsTTL, so grants added or revoked while mounted show up quickly.
type Grants interface {
	Workspaces(ctx context.Context, user string) ([]Workspace, error)
}

// Options configure a Manager.
type Options struct {
	// Client talks to MinIO; required (objstore.New makes one). It is
	// minio-go's client type, under the name objstore gives it.
	Client *objstore.Client
	// Grants lists each user's workspaces; required.
	Grants Grants
	// MountRoot holds the mount points: <MountRoot>/<user>, and
	// <MountRoot>/.readonly/<user> for read-only views; required.
	MountRoot string
	// TmpDir holds the write-back cache, in <TmpDir>/sftpgate; required.
	// TmpDir is created when missing; <TmpDir>/sftpgate must be the
	// daemon's alone (owned by its user, not writable by group or others,
	// not a symlink), or NewManager refuses to start (ErrUnsafeCacheDir).
	TmpDir string
	// LegacyTmpDir, if not empty, is where an older version kept its cache
	// (<LegacyTmpDir>/sftpgate): when that directory passes the same
	// checks, its local copies are moved into the cache before recovery.
	// One that does not is logged and left alone.
	LegacyTmpDir string
	// ValidKey tells whether a journal found at start may name the object
	// key in bucket (a configured workspace's); one it refuses is moved to
	// conflicts/ and never acted upon. Nil accepts every key.
	ValidKey func(bucket, key string) bool
	// Lifespan is how long a clean local copy is kept after its last use;
	// zero means 15 minutes.
	Lifespan time.Duration
	// IdleDelay is how long a view stays mounted after its last release;
	// zero means 30 seconds.
	IdleDelay time.Duration
	// PartSize is the multipart part size (5 MiB to 5 GiB); zero means 16 MiB.
	PartSize int64
	// Concurrency is the number of parallel part uploads and read-ahead
	// GETs per file; zero means 4.
	Concurrency int
	// ReadAheadBudget is the most memory, in bytes, that the read-ahead
	// of all read handles together may hold (in 2 MiB cells), shared
	// fairly among the handles reading; zero means 256 MiB. A handle
	// reading alone gets a full window (up to Concurrency × 8 MiB ahead);
	// a handle that gets no share reads only what was asked.
	ReadAheadBudget int64
	// MinFree is the free space kept in TmpDir: writes that would go under
	// it fail with ENOSPC. Zero means 512 MiB; negative disables the check.
	MinFree int64
	// MaxFileSize is the largest size a write or a truncate may give a
	// file; past it they fail with EFBIG. Zero means 5 TiB (the S3 limit).
	MaxFileSize int64
	// AttrTTL is the kernel's attribute and entry cache TTL, and how long
	// an object's attributes are trusted; zero means 1 second.
	AttrTTL time.Duration
	// GrantsTTL is how long a user's grants are trusted; zero means 2 seconds.
	GrantsTTL time.Duration
	// MaxCleanFiles bounds the clean local copies kept for a resume; past
	// it the least recently used go first (never a copy being written or
	// an interrupted upload). Zero means 4096.
	MaxCleanFiles int
	// MaxUserCopies bounds the local copies one user has being written or
	// waiting as interrupted uploads: an open for writing past it fails
	// with EMFILE. Zero means 1024.
	MaxUserCopies int
	// MaxUserCopyBytes bounds the size of the copies one user has being
	// written or waiting as interrupted uploads, added up: a write that
	// would grow them past it fails with EDQUOT. Zero means a quarter of
	// the size of the file system holding TmpDir; negative, no bound.
	MaxUserCopyBytes int64
	// Quotas holds the users' quotas over their personal workspaces; nil
	// means no quotas. Writes and uploads past a quota fail with EDQUOT,
	// and statfs reports it.
	Quotas Quotas
	// Staging, if not nil, records streamed uploads as they progress so
	// that an interrupted one is resumed through any node sharing it
	// (staging.go); nil keeps interrupted uploads as local copies only.
	Staging StagingStore
	// StagingLease is how long a staged upload stays held by a process
	// that gives no sign of life (a node killed); zero means 5 seconds.
	StagingLease time.Duration
	// Logger receives the package's logs; nil discards them.
	Logger *slog.Logger
}

// withDefaults validates o and fills in the zero values.
func (o Options) withDefaults() (Options, error) {
	bad := func(field, why string) (Options, error) {
		return o, fmt.Errorf("option %s: %s: %w", field, why, ErrInvalidOptions)
	}
	switch {
	case o.Client == nil:
		return bad("Client", "required")
	case o.Grants == nil:
		return bad("Grants", "required")
	case o.MountRoot == "":
		return bad("MountRoot", "required")
	case o.TmpDir == "":
		return bad("TmpDir", "required")
	case o.Lifespan < 0:
		return bad("Lifespan", "negative")
	case o.IdleDelay < 0:
		return bad("IdleDelay", "negative")
	case o.AttrTTL < 0:
		return bad("AttrTTL", "negative")
	case o.GrantsTTL < 0:
		return bad("GrantsTTL", "negative")
	case o.MaxFileSize < 0:
		return bad("MaxFileSize", "negative")
	case o.Concurrency < 0:
		return bad("Concurrency", "negative")
	case o.MaxCleanFiles < 0:
		return bad("MaxCleanFiles", "negative")
	case o.MaxUserCopies < 0:
		return bad("MaxUserCopies", "negative")
	case o.ReadAheadBudget < 0 || (o.ReadAheadBudget > 0 && o.ReadAheadBudget < readChunk):
		return bad("ReadAheadBudget", "must be at least 2 MiB")
	case o.PartSize < 0 || (o.PartSize > 0 && o.PartSize < 5<<20) || o.PartSize > 5<<30:
		return bad("PartSize", "must be between 5 MiB and 5 GiB")
	}
	var err error
	if o.MountRoot, err = filepath.Abs(o.MountRoot); err != nil {
		return bad("MountRoot", err.Error())
	}
	if o.TmpDir, err = filepath.Abs(o.TmpDir); err != nil {
		return bad("TmpDir", err.Error())
	}
	if o.LegacyTmpDir != "" {
		if o.LegacyTmpDir, err = filepath.Abs(o.LegacyTmpDir); err != nil {
			return bad("LegacyTmpDir", err.Error())
		}
	}
	if o.Lifespan == 0 {
		o.Lifespan = 15 * time.Minute
	}
	if o.IdleDelay == 0 {
		o.IdleDelay = 30 * time.Second
	}
	if o.PartSize == 0 {
		o.PartSize = 16 << 20
	}
	if o.Concurrency == 0 {
		o.Concurrency = 4
	}
	if o.ReadAheadBudget == 0 {
		o.ReadAheadBudget = 256 << 20
	}
	if o.MinFree == 0 {
		o.MinFree = 512 << 20
	}
	if o.MaxFileSize == 0 {
		o.MaxFileSize = 5 << 40
	}
	if o.AttrTTL == 0 {
		o.AttrTTL = time.Second
	}
	if o.GrantsTTL == 0 {
		o.GrantsTTL = 2 * time.Second
	}
	if o.MaxCleanFiles == 0 {
		o.MaxCleanFiles = 4096
	}
	if o.MaxUserCopies == 0 {
		o.MaxUserCopies = 1024
	}
	if o.StagingLease <= 0 {
		o.StagingLease = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// MountOptions tune one view.
type MountOptions struct {
	// ReadOnly makes the whole view read-only (for admin inspection). It is
	// mounted at <MountRoot>/.readonly/<user>, beside the user's own view.
	ReadOnly bool
}

// ViewStats describes one mounted view.
type ViewStats struct {
	// User owns the view; Dir is its mount point.
	User, Dir string
	// Since is when the view was mounted.
	Since time.Time
	// Holders counts the Acquire calls not released yet.
	Holders int
	// OpenFiles counts the files open in the view.
	OpenFiles int
	// DirtyBytes and CleanBytes are the sizes of the user's local copies
	// with and without changes not uploaded yet; DirtyFiles and CleanFiles
	// count those copies. They are zero for a read-only view.
	DirtyBytes, CleanBytes int64
	DirtyFiles, CleanFiles int
	// UploadsInFlight counts the user's uploads running now.
	UploadsInFlight int
	// ReadOnly is set for a read-only view.
	ReadOnly bool
}

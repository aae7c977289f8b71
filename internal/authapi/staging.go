package authapi

import "time"

// The record of a staged upload, shared by the identity store (auth keeps
// the records, in the table staged_uploads) and the file system (fusefs
// writes and resumes them): one type, so that the store serves as
// fusefs' StagingStore as it is. auth and fusefs re-export these names.

// StagedPart is one part of a staged upload.
type StagedPart struct {
	Number int    `json:"n"`
	Size   int64  `json:"size"`
	ETag   string `json:"etag"`
}

// StagedUpload is the record of one staged upload: a multipart upload of
// an interrupted streamed upload, which any node of a cluster may
// continue.
type StagedUpload struct {
	UploadID string
	Bucket   string
	Key      string
	// BaseETag is the object it replaces, when BaseExists.
	BaseETag   string
	BaseExists bool
	// Mtime and Mode are the metadata the upload was begun with.
	Mtime time.Time
	Mode  uint32
	// Size is the contiguous prefix staged: the sum of the sizes of
	// Parts, numbered 1, 2, … with no gap.
	Size  int64
	Parts []StagedPart
	// Owner is the process holding it, "" when none.
	Owner string
	// Updated is the time of its last progress (the store's clock).
	Updated time.Time
	// Held tells, on the records read, that Owner gave a sign of life
	// within the lease asked.
	Held bool
}

package objstore

import (
	"errors"
	"net/http"
	"slices"

	"github.com/minio/minio-go/v7"
)

// Sentinel errors: the errors of a Store wrap the one (or ones) the
// server's S3 error code stands for, besides minio-go's own error.
var (
	// ErrNotFound: no such key, bucket or upload (NoSuchKey,
	// NoSuchBucket, NotFound, any 404).
	ErrNotFound = errors.New("objstore: not found")
	// ErrNoSuchBucket: the bucket does not exist (also ErrNotFound).
	ErrNoSuchBucket = errors.New("objstore: no such bucket")
	// ErrNoSuchUpload: the multipart upload does not exist (any more).
	ErrNoSuchUpload = errors.New("objstore: no such upload")
	// ErrAccessDenied: the credentials may not do this (AccessDenied,
	// InvalidAccessKeyId, SignatureDoesNotMatch, AllAccessDisabled, any 403).
	ErrAccessDenied = errors.New("objstore: access denied")
	// ErrUnknownAccessKey: the server does not know the access key (also
	// ErrAccessDenied).
	ErrUnknownAccessKey = errors.New("objstore: unknown access key")
	// ErrBadSecret: the secret key does not match the access key (also
	// ErrAccessDenied).
	ErrBadSecret = errors.New("objstore: wrong secret key")
	// ErrSlowDown: the server is busy; try again (SlowDown, SlowDownRead,
	// SlowDownWrite, ServiceUnavailable, RequestTimeout).
	ErrSlowDown = errors.New("objstore: server busy")
	// ErrTooLarge: the object is too large for the server (EntityTooLarge).
	ErrTooLarge = errors.New("objstore: entity too large")
	// ErrKeyTooLong: the key is too long (KeyTooLong, KeyTooLongError).
	ErrKeyTooLong = errors.New("objstore: key too long")
	// ErrInvalidName: the key, bucket name or an argument is refused
	// (InvalidObjectName, XMinioInvalidObjectName, InvalidBucketName,
	// InvalidArgument).
	ErrInvalidName = errors.New("objstore: invalid name or argument")
	// ErrPreconditionFailed: the object is no longer the version asked
	// for (PreconditionFailed).
	ErrPreconditionFailed = errors.New("objstore: precondition failed")
	// ErrStorageFull: the server is out of space (XMinioStorageFull,
	// StorageFull).
	ErrStorageFull = errors.New("objstore: storage full")
	// ErrBucketExists: the bucket exists already (BucketAlreadyExists,
	// BucketAlreadyOwnedByYou).
	ErrBucketExists = errors.New("objstore: bucket exists")
	// ErrPlainHTTP: an https client met a server speaking plain http
	// (Check).
	ErrPlainHTTP = errors.New("objstore: server speaks plain http")
)

// codeKinds maps S3 error codes to the sentinels they stand for. A code
// not in it is known by its HTTP status (404, 403) alone.
var codeKinds = map[string][]error{
	"NoSuchKey":               {ErrNotFound},
	"NoSuchBucket":            {ErrNotFound, ErrNoSuchBucket},
	"NotFound":                {ErrNotFound},
	"AccessDenied":            {ErrAccessDenied},
	"InvalidAccessKeyId":      {ErrAccessDenied, ErrUnknownAccessKey},
	"SignatureDoesNotMatch":   {ErrAccessDenied, ErrBadSecret},
	"AllAccessDisabled":       {ErrAccessDenied},
	"SlowDown":                {ErrSlowDown},
	"SlowDownRead":            {ErrSlowDown},
	"SlowDownWrite":           {ErrSlowDown},
	"ServiceUnavailable":      {ErrSlowDown},
	"RequestTimeout":          {ErrSlowDown},
	"EntityTooLarge":          {ErrTooLarge},
	"KeyTooLong":              {ErrKeyTooLong},
	"KeyTooLongError":         {ErrKeyTooLong},
	"InvalidObjectName":       {ErrInvalidName},
	"XMinioInvalidObjectName": {ErrInvalidName},
	"InvalidBucketName":       {ErrInvalidName},
	"InvalidArgument":         {ErrInvalidName},
	"PreconditionFailed":      {ErrPreconditionFailed},
	"XMinioStorageFull":       {ErrStorageFull},
	"StorageFull":             {ErrStorageFull},
	"BucketAlreadyExists":     {ErrBucketExists},
	"BucketAlreadyOwnedByYou": {ErrBucketExists},
	"NoSuchUpload":            {ErrNoSuchUpload}, // and its status
}

// codeError is an error of the server with the sentinels of its code.
type codeError struct {
	err   error // as minio-go returned it
	kinds []error
}

func (e *codeError) Error() string { return e.err.Error() }

// Unwrap lets errors.Is see the sentinels, and errors.As minio-go's error.
func (e *codeError) Unwrap() []error { return append([]error{e.err}, e.kinds...) }

// Classify returns err wrapped with the sentinels of its S3 error code,
// when it holds an answer of the server (a minio-go ErrorResponse)
// anywhere in its chain; else err as it is. The errors of a Store are
// classified already; this is for errors of minio-go met elsewhere.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	var ce *codeError
	if errors.As(err, &ce) {
		return err
	}
	return classify(err)
}

// classify wraps an error of minio-go with the sentinels of its code.
func classify(err error) error {
	var er minio.ErrorResponse
	if !errors.As(err, &er) {
		return err
	}
	kinds := slices.Clone(codeKinds[er.Code])
	if len(kinds) == 0 || er.Code == "NoSuchUpload" {
		switch er.StatusCode {
		case http.StatusNotFound:
			kinds = append(kinds, ErrNotFound)
		case http.StatusForbidden:
			kinds = append(kinds, ErrAccessDenied)
		}
	}
	if len(kinds) == 0 {
		return err
	}
	return &codeError{err: err, kinds: kinds}
}

// isNotFound reports whether err says the key, bucket or upload does not
// exist.
func isNotFound(err error) bool { return errors.Is(classify(err), ErrNotFound) }

// ErrorCode returns the S3 error code and message of an error answered by
// the server; ok is false for any other error (network, context, …).
func ErrorCode(err error) (code, message string, ok bool) {
	var er minio.ErrorResponse
	if !errors.As(err, &er) {
		return "", "", false
	}
	return er.Code, er.Message, true
}

// CodeForStatus names the S3 error code of an error response that has
// none (a HEAD answer has no body), from its HTTP status, as minio-go
// does; object tells whether the request named an object, not only a
// bucket. It returns "" for a status minio-go gives no name.
func CodeForStatus(status int, object bool) string {
	switch status {
	case http.StatusNotFound:
		if object {
			return "NoSuchKey"
		}
		return "NoSuchBucket"
	case http.StatusForbidden:
		return "AccessDenied"
	case http.StatusConflict:
		return "Conflict"
	case http.StatusPreconditionFailed:
		return "PreconditionFailed"
	case http.StatusRequestedRangeNotSatisfiable:
		return "InvalidRange"
	case http.StatusNotImplemented:
		return "NotImplemented"
	}
	return ""
}

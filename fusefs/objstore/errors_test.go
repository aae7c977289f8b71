package objstore

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/minio/minio-go/v7"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		is   []error
		not  []error
	}{
		{"no such key", fmt.Errorf("stat: %w", minio.ErrorResponse{Code: "NoSuchKey", StatusCode: 404}), []error{ErrNotFound}, []error{ErrNoSuchBucket}},
		{"no such bucket", minio.ErrorResponse{Code: "NoSuchBucket"}, []error{ErrNotFound, ErrNoSuchBucket}, nil},
		{"404 without a known code", minio.ErrorResponse{Code: "Odd", StatusCode: 404}, []error{ErrNotFound}, nil},
		{"no such upload", minio.ErrorResponse{Code: "NoSuchUpload", StatusCode: 404}, []error{ErrNoSuchUpload, ErrNotFound}, nil},
		{"unknown access key", minio.ErrorResponse{Code: "InvalidAccessKeyId", StatusCode: 403}, []error{ErrAccessDenied, ErrUnknownAccessKey}, []error{ErrBadSecret}},
		{"bad secret", minio.ErrorResponse{Code: "SignatureDoesNotMatch", StatusCode: 403}, []error{ErrAccessDenied, ErrBadSecret}, nil},
		{"403 without a known code", minio.ErrorResponse{Code: "Odd", StatusCode: 403}, []error{ErrAccessDenied}, nil},
		{"slow down", minio.ErrorResponse{Code: "SlowDown", StatusCode: 503}, []error{ErrSlowDown}, nil},
		{"too large", minio.ErrorResponse{Code: "EntityTooLarge"}, []error{ErrTooLarge}, nil},
		{"key too long", minio.ErrorResponse{Code: "KeyTooLongError"}, []error{ErrKeyTooLong}, nil},
		{"bad name", minio.ErrorResponse{Code: "XMinioInvalidObjectName"}, []error{ErrInvalidName}, nil},
		{"precondition", minio.ErrorResponse{Code: "PreconditionFailed", StatusCode: 412}, []error{ErrPreconditionFailed}, []error{ErrNotFound}},
		{"full", minio.ErrorResponse{Code: "XMinioStorageFull"}, []error{ErrStorageFull}, nil},
		{"bucket exists", minio.ErrorResponse{Code: "BucketAlreadyOwnedByYou", StatusCode: 409}, []error{ErrBucketExists}, nil},
		{"a code sure of itself wins over its status", minio.ErrorResponse{Code: "AccessDenied", StatusCode: 404}, []error{ErrAccessDenied}, []error{ErrNotFound}},
		{"not from the server", fmt.Errorf("get: %w", context.Canceled), []error{context.Canceled}, []error{ErrNotFound, ErrAccessDenied}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Classify(tt.err)
			for _, want := range tt.is {
				if !errors.Is(got, want) {
					t.Errorf("errors.Is(Classify(%v), %v): got false, want true", tt.err, want)
				}
			}
			for _, not := range tt.not {
				if errors.Is(got, not) {
					t.Errorf("errors.Is(Classify(%v), %v): got true, want false", tt.err, not)
				}
			}
			if got.Error() != tt.err.Error() {
				t.Errorf("Classify changed the message: got %q, want %q", got.Error(), tt.err.Error())
			}
			var er minio.ErrorResponse
			if errors.As(tt.err, &er) && !errors.As(got, &er) {
				t.Errorf("Classify(%v) hides minio-go's error from errors.As", tt.err)
			}
			if again := Classify(got); again != got {
				t.Errorf("Classify of a classified error: got %v, want it unchanged", again)
			}
		})
	}
	if Classify(nil) != nil {
		t.Errorf("Classify(nil): got non-nil, want nil")
	}
}

func TestErrorCode(t *testing.T) {
	code, msg, ok := ErrorCode(fmt.Errorf("check: %w", Classify(minio.ErrorResponse{Code: "AccessDenied", Message: "no"})))
	if !ok || code != "AccessDenied" || msg != "no" {
		t.Errorf("ErrorCode: got %q %q %v, want AccessDenied no true", code, msg, ok)
	}
	if _, _, ok := ErrorCode(context.Canceled); ok {
		t.Errorf("ErrorCode(context.Canceled): got ok, want not ok")
	}
}

func TestPartSize(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name        string
		min, size   int64
		parts, want int
	}{
		{"fits", 16 * mib, 100 * mib, MaxParts, 16 * mib},
		{"empty", 16 * mib, 0, MaxParts, 16 * mib},
		{"grows to a MiB multiple", 5 * mib, 10000*5*mib + 1, MaxParts, 6 * mib},
		{"few parts left", 16 * mib, 1000 * mib, 10, 100 * mib},
		{"rounds up", 5 * mib, 100*mib + 1, 10, 11 * mib},
		{"no part left", 16 * mib, 32 * mib, 0, 32 * mib},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PartSize(tt.min, tt.size, tt.parts); got != int64(tt.want) {
				t.Errorf("PartSize(%d, %d, %d): got %d, want %d", tt.min, tt.size, tt.parts, got, tt.want)
			}
		})
	}
}

func TestCodeForStatus(t *testing.T) {
	tests := []struct {
		status int
		object bool
		want   string
	}{
		{404, true, "NoSuchKey"}, {404, false, "NoSuchBucket"}, {403, true, "AccessDenied"},
		{409, false, "Conflict"}, {412, true, "PreconditionFailed"}, {416, true, "InvalidRange"},
		{501, false, "NotImplemented"}, {500, true, ""},
	}
	for _, tt := range tests {
		if got := CodeForStatus(tt.status, tt.object); got != tt.want {
			t.Errorf("CodeForStatus(%d, %v): got %q, want %q", tt.status, tt.object, got, tt.want)
		}
	}
}

package auth

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateNames(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // substring of the message; "" = valid
	}{
		{"simple", "alice", ""},
		{"dots and dashes", "a.b-c_d", ""},
		{"unicode", "zoë", ""},
		{"at sign", "alice@example.com", ""},
		{"max length", strings.Repeat("a", 64), ""},
		{"empty", "", "must not be empty"},
		{"too long", strings.Repeat("a", 65), "longer than 64 bytes"},
		{"dot", ".", `must not be "."`},
		{"dotdot", "..", `".."`},
		{"contains dotdot", "a..b", `".."`},
		{"slash", "a/b", `"/"`},
		{"leading slash", "/a", `"/"`},
		{"nul", "a\x00b", "control characters"},
		{"newline", "a\nb", "control characters"},
		{"tab", "\ta", "control characters"},
		{"del", "a\x7f", "control characters"},
		{"c1 control", "a\u0085", "control characters"},
		{"bad utf-8", "a\xffb", "UTF-8"},
	}
	for _, v := range []struct {
		kind string
		fn   func(string) error
	}{{"login", ValidateLogin}, {"workspace slug", ValidateSlug}} {
		for _, tt := range tests {
			t.Run(v.kind+"/"+tt.name, func(t *testing.T) {
				err := v.fn(tt.in)
				checkValidation(t, err, tt.wantErr, v.kind)
			})
		}
	}
}

func checkValidation(t *testing.T, err error, wantErr, kind string) {
	t.Helper()
	if wantErr == "" {
		if err != nil {
			t.Fatalf("got %v, want nil", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("got nil, want error containing %q", wantErr)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("got %v, want it to wrap ErrInvalid", err)
	}
	if msg := err.Error(); !strings.Contains(msg, wantErr) || !strings.Contains(msg, kind) || !strings.HasPrefix(msg, "auth: ") {
		t.Errorf("got message %q, want it to start with \"auth: \" and contain %q and %q", msg, kind, wantErr)
	}
}

func TestValidateBucket(t *testing.T) {
	tests := []struct {
		in, wantErr string
	}{
		{"abc", ""},
		{"my-bucket.2026", ""},
		{"a1b", ""},
		{"123", ""},
		{strings.Repeat("a", 63), ""},
		{"ab", "3 to 63"},
		{"", "3 to 63"},
		{strings.Repeat("a", 64), "3 to 63"},
		{"MyBucket", "uppercase"},
		{"my_bucket", `'_' is not allowed`},
		{"my bucket", `' ' is not allowed`},
		{"bücket", `'ü' is not allowed`},
		{"-abc", "start and end"},
		{"abc-", "start and end"},
		{".abc", "start and end"},
		{"abc.", "start and end"},
		{"a..b", `".."`},
		{"a.-b", `".-"`},
		{"a-.b", `"-."`},
		{"192.168.1.1", "IP address"},
		{"10.0.0.255", "IP address"},
		{"xn--abc", `"xn--"`},
		{"sthree-abc", `"sthree-"`},
		{"abc-s3alias", `"-s3alias"`},
		{"abc--ol-s3", `"--ol-s3"`},
		{"a\x00c", "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			checkValidation(t, ValidateBucket(tt.in), tt.wantErr, "bucket")
		})
	}
}

func TestValidatePrefix(t *testing.T) {
	tests := []struct {
		in, wantErr string
	}{
		{"", ""},
		{"{user}/", ""},
		{"{user}", ""},
		{"home/{user}/files/", ""},
		{"shared", ""},
		{"a/b/c/", ""},
		{"dots.in.names/", ""},
		{"/abs", `start with "/"`},
		{"a/../b", `".." segment`},
		{"..", `".." segment`},
		{"a/..", `".." segment`},
		{"./a", `"." segment`},
		{"a//b", "empty segment"},
		{"a\nb", "control characters"},
		{"a\x00", "control characters"},
		{"{usr}/", "placeholder"},
		{"{user", "placeholder"},
		{"a}", "placeholder"},
		{"\xff", "UTF-8"},
		{strings.Repeat("a", 1025), "longer than 1024"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			checkValidation(t, ValidatePrefix(tt.in), tt.wantErr, "prefix")
		})
	}
}

func TestExpandPrefix(t *testing.T) {
	tests := []struct{ prefix, login, want string }{
		{"{user}/", "alice", "alice/"},
		{"home/{user}/{user}", "bob", "home/bob/bob"},
		{"shared/", "alice", "shared/"},
		{"", "alice", ""},
		{"{user}/", "{user}", "{user}/"},
	}
	for _, tt := range tests {
		if got := ExpandPrefix(tt.prefix, tt.login); got != tt.want {
			t.Errorf("ExpandPrefix(%q, %q): got %q, want %q", tt.prefix, tt.login, got, tt.want)
		}
	}
}

package archtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	module = "github.com/sftpgate/sftpgate"
	minio  = "github.com/minio/minio-go"
)

// pkg is what the rules read of one package in `go list -json` output.
// Imports and Deps leave out what only the package's tests import.
type pkg struct {
	ImportPath string
	Imports    []string // direct imports
	Deps       []string // every package it depends on, directly or not
}

// listModule returns the module's packages (with their non-test imports)
// as `go list -deps -json` reports them.
func listModule(t *testing.T) map[string]pkg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "list", "-deps", "-json=ImportPath,Imports,Deps", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	pkgs := make(map[string]pkg)
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if in(p.ImportPath, module) {
			pkgs[p.ImportPath] = p
		}
	}
	// The rules below are only as good as the graph: make sure it holds
	// the packages they name and edges known to exist.
	for _, name := range []string{"sftpd", "fusefs", "auth", "cmd/sftpgate"} {
		if _, ok := pkgs[module+"/"+name]; !ok {
			t.Fatalf("go list did not report %s/%s", module, name)
		}
	}
	if deps := pkgs[module+"/cmd/sftpgate"].Deps; !slices.Contains(deps, module+"/sftpd") || !slices.Contains(deps, module+"/fusefs") {
		t.Fatalf("cmd/sftpgate's deps %v lack sftpd or fusefs: the graph is not what the rules expect", deps)
	}
	return pkgs
}

// in reports whether the import path p is root or a package below it.
func in(p, root string) bool {
	return p == root || strings.HasPrefix(p, root+"/")
}

// TestImportRules keeps the package graph of DESIGN.md: sftpd and fusefs
// know nothing of each other or of auth (they meet in cmd/sftpgate, through
// small interfaces and internal/fsapi, internal/authapi), auth knows
// nothing of either, and only the object-store layer talks to MinIO's
// client library.
func TestImportRules(t *testing.T) {
	pkgs := listModule(t)
	for _, tt := range []struct {
		pkg       string   // the package and those below it
		forbidden []string // packages (and those below them) it must not depend on
	}{
		{"sftpd", []string{"fusefs", "auth"}},
		{"fusefs", []string{"sftpd", "auth"}},
		{"auth", []string{"sftpd", "fusefs"}},
	} {
		t.Run(tt.pkg+" imports neither "+strings.Join(tt.forbidden, " nor "), func(t *testing.T) {
			for _, p := range pkgs {
				if !in(p.ImportPath, module+"/"+tt.pkg) {
					continue
				}
				for _, d := range p.Deps {
					for _, f := range tt.forbidden {
						if in(d, module+"/"+f) {
							t.Errorf("%s depends on %s", p.ImportPath, d)
						}
					}
				}
			}
		})
	}

	t.Run("only fusefs/objstore imports minio-go", func(t *testing.T) {
		// Tests are exempt (go list leaves their imports out), and so are
		// the test harness and the embedded store, which run a server.
		allowed := []string{module + "/fusefs/objstore", module + "/internal/testenv", module + "/internal/embedstore"}
		var importers, bad []string
		for _, p := range pkgs {
			if !slices.ContainsFunc(p.Imports, func(i string) bool { return in(i, minio) }) {
				continue
			}
			importers = append(importers, p.ImportPath)
			if !slices.ContainsFunc(allowed, func(a string) bool { return in(p.ImportPath, a) }) {
				bad = append(bad, p.ImportPath)
			}
		}
		if len(importers) == 0 {
			t.Fatalf("no package imports %s: the rule checks nothing", minio)
		}
		slices.Sort(bad)
		for _, p := range bad {
			t.Errorf("%s imports %s: only the object-store layer may", p, minio)
		}
	})
}

// Package archtest holds no code: its test checks the import rules of the
// module's packages (which package may know about which), with the
// package graph that `go list -deps` reports.
package archtest

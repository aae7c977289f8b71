package sftpd

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/crypto/ssh"
)

// maxHostKeySize bounds how much of a host key file is read.
const maxHostKeySize = 1 << 20

// LoadHostKey reads an SSH private key (RSA, ECDSA or Ed25519, in OpenSSH
// or PEM format) from path to use as a host key. Encrypted keys are
// refused. Every error wraps ErrHostKey and names the file and the problem.
func LoadHostKey(path string) (ssh.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrHostKey, path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrHostKey, path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w %s: not a regular file", ErrHostKey, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxHostKeySize+1))
	if err != nil {
		return nil, fmt.Errorf("%w %s: read: %w", ErrHostKey, path, err)
	}
	if len(data) > maxHostKeySize {
		return nil, fmt.Errorf("%w %s: file larger than %d bytes", ErrHostKey, path, maxHostKeySize)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		var pme *ssh.PassphraseMissingError
		if errors.As(err, &pme) {
			return nil, fmt.Errorf("%w %s: key is encrypted with a passphrase (host keys must not be)", ErrHostKey, path)
		}
		return nil, fmt.Errorf("%w %s: not a usable private key: %w", ErrHostKey, path, err)
	}
	return signer, nil
}

// LoadHostKeys loads every host key in paths with LoadHostKey, so that the
// server offers the algorithms of each. Two keys of the same type are
// refused (a client could only ever see one of them), naming both files.
func LoadHostKeys(paths ...string) ([]ssh.Signer, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("%w: no host key file", ErrHostKey)
	}
	signers := make([]ssh.Signer, 0, len(paths))
	byType := make(map[string]string, len(paths))
	for _, path := range paths {
		s, err := LoadHostKey(path)
		if err != nil {
			return nil, err
		}
		typ := s.PublicKey().Type()
		if other, ok := byType[typ]; ok {
			return nil, fmt.Errorf("%w %s: a second %s key (the first is %s): give one key per type", ErrHostKey, path, typ, other)
		}
		byType[typ] = path
		signers = append(signers, s)
	}
	return signers, nil
}

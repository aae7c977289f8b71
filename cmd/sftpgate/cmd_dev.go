package main

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/sftpgate/sftpgate/auth"
	"github.com/sftpgate/sftpgate/internal/config"
	"github.com/sftpgate/sftpgate/internal/daemon"
)

// Quick-start fixtures created by "sftpgate dev" (make run).
const (
	devUser          = "admin"
	devHostKey       = "ssh_host_ed25519_key"
	devRSAHostKey    = "ssh_host_rsa_key"
	devRSABits       = 3072
	devTokenLifetime = "24h"
)

// devWorkspaces are the quick start's workspaces: one shared, one personal.
var devWorkspaces = []auth.Workspace{
	{Slug: "common-files", Bucket: "common"},
	{Slug: "personal-files", Bucket: "personal", Prefix: "{user}/"},
}

// newDevCmd is "sftpgate dev", the quick start behind `make run`.
func newDevCmd() *cobra.Command {
	var lf logFlags
	var port int
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Set up and run a development gateway (what `make run` does)",
		Long: `Set up what a first run needs in the working directory, then serve:
an Ed25519 and an RSA host key, a pydio.json enabling the gateway on 127.0.0.1:PORT
with the embedded object store, a user "admin", a shared workspace
"common-files" (bucket common) and a personal one "personal-files" (bucket
personal, prefix {user}/), both granted to admin read-write. It prints a
24 h token for admin and the sftp command to connect with. Running it again
reuses what exists (and mints a new token).`,
		Example: `  sftpgate --workdir ./.sftpgate-dev dev
  sftpgate --workdir /tmp/try dev --port 2222`,
		Args: noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			log, err := lf.logger(cmd)
			if err != nil {
				return err
			}
			if port < 1 || port > 65535 {
				return usagef("--port: %d is not between 1 and 65535", port)
			}
			dir, err := workdir(cmd)
			if err != nil {
				return err
			}
			cfgPath := configPath(cmd, dir)
			if err := devSetup(cmd.Context(), dir, cfgPath, port); err != nil {
				return err
			}
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			secret, tok, err := devToken(cmd)
			if err != nil {
				return err
			}
			lf.apply(cfg)
			out := cmd.OutOrStdout()
			return daemon.Run(cmd.Context(), cfg, log, func(addr string) {
				printToken(out, devUser, tok, secret, false)
				fmt.Fprintf(out, "\nConnect (password: the token above):\n    sftp -P %d %s@127.0.0.1\n", cfg.Port, devUser)
				fmt.Fprintf(out, "While a session is open, its view is mounted at:\n    %s\n", filepath.Join(cfg.MountRoot, devUser))
				fmt.Fprintf(out, "Stop with Ctrl-C. Working directory: %s\n\n", dir)
			})
		}),
	}
	lf.add(cmd)
	cmd.Flags().IntVar(&port, "port", config.DefaultPort, "port of the configuration written on the first run")
	return cmd
}

// devSetup creates what is missing in dir: host key, config, user,
// workspaces and grants.
func devSetup(ctx context.Context, dir, cfgPath string, port int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	keyPath := filepath.Join(dir, devHostKey)
	if err := writeHostKey(keyPath, newEd25519Key); err != nil {
		return err
	}
	rsaPath := filepath.Join(dir, devRSAHostKey)
	if err := writeHostKey(rsaPath, newRSAKey); err != nil {
		return err
	}
	if _, err := os.Stat(cfgPath); errors.Is(err, fs.ErrNotExist) {
		if err := writeDevConfig(cfgPath, dir, keyPath, rsaPath, port); err != nil {
			return err
		}
	} else if err != nil {
		return fmt.Errorf("config %s: %w", cfgPath, err)
	}
	st, err := auth.Open(filepath.Join(dir, config.StoreFile))
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer st.Close()
	if _, err := st.CreateUser(ctx, devUser); err != nil && !errors.Is(err, auth.ErrExists) {
		return fmt.Errorf("create user %s: %w", devUser, err)
	}
	for _, w := range devWorkspaces {
		if err := st.CreateWorkspace(ctx, w); err != nil && !errors.Is(err, auth.ErrExists) {
			return fmt.Errorf("create workspace %s: %w", w.Slug, err)
		}
		if err := st.Grant(ctx, w.Slug, devUser, false); err != nil {
			return fmt.Errorf("grant %s to %s: %w", w.Slug, devUser, err)
		}
	}
	return nil
}

// newEd25519Key and newRSAKey make the private keys of the quick start's
// host keys.
func newEd25519Key() (crypto.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
}

func newRSAKey() (crypto.PrivateKey, error) {
	return rsa.GenerateKey(rand.Reader, devRSABits)
}

// writeHostKey writes a new host key made by newKey in OpenSSH format at
// path, unless a file is already there.
func writeHostKey(path string, newKey func() (crypto.PrivateKey, error)) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	priv, err := newKey()
	if err != nil {
		return fmt.Errorf("host key %s: %w", path, err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "sftpgate dev host key")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	if err := pem.Encode(f, block); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("host key %s: %w", path, err)
	}
	return f.Close()
}

// writeDevConfig writes a pydio.json that enables the gateway on loopback.
func writeDevConfig(path, dir, keyPath, rsaPath string, port int) error {
	doc := map[string]any{
		"services": map[string]any{
			"pydio.gateway.sftp": map[string]any{
				"enabled":          true,
				"hostKeyFile":      keyPath,
				"hostKeyFiles":     []string{rsaPath},
				"port":             port,
				"bind":             "127.0.0.1",
				"tmpDir":           filepath.Join(dir, "tmp"),
				"tmpFilesLifespan": "15m",
			},
		},
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp-" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// devToken mints the quick start's 24 h token for admin.
func devToken(cmd *cobra.Command) (string, auth.Token, error) {
	d, err := auth.ParseDuration(devTokenLifetime)
	if err != nil {
		return "", auth.Token{}, err
	}
	var secret string
	var tok auth.Token
	err = withStore(cmd, func(ctx context.Context, st *auth.Store) error {
		secret, tok, err = st.MintToken(ctx, devUser, auth.MintOptions{Expires: d, Label: "make run"})
		return err
	})
	if err != nil {
		return "", auth.Token{}, fmt.Errorf("mint token: %w", err)
	}
	return secret, tok, nil
}

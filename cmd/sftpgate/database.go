package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/sftpgate/sftpgate/auth"
	"github.com/sftpgate/sftpgate/internal/config"
)

// openAdminStore opens the store the admin commands work on: the one the
// "database" key of the configuration file names, or <workdir>/sftpgate.db
// when there is no file or no key. Only that key is read: the admin
// commands do not need an otherwise valid configuration.
func openAdminStore(cmd *cobra.Command, dir string) (*auth.Store, error) {
	database, err := config.AdminDatabase(configPath(cmd, dir))
	if err != nil {
		return nil, err
	}
	if database == config.DatabaseSQLite {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("working directory: %w", err)
		}
	}
	return config.OpenStore(database, dir)
}

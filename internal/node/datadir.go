package node

import (
	"fmt"
	"log/slog"
	"os"
)

// secureDataDir makes the data directory private to the node's user. It is
// created 0700, but one that already existed (a Docker volume, systemd's
// StateDirectory) is often 0755: the directory is tightened when the node
// may, and a warning says so or says what to do.
func secureDataDir(dir string, log *slog.Logger) {
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return
	}
	perm := st.Mode().Perm()
	if perm&0o077 == 0 {
		return
	}
	if err := os.Chmod(dir, perm&^0o077); err != nil {
		log.Warn("the data directory is readable by other users; make it private with chmod 700", "dir", dir, "mode", fmt.Sprintf("%#o", perm), "err", err)
		return
	}
	log.Warn("the data directory was readable by other users; made it private", "dir", dir, "was", fmt.Sprintf("%#o", perm), "now", fmt.Sprintf("%#o", perm&^0o077))
}

//go:build unix

package main

import "syscall"

// privateUmask makes every file and directory the node creates (database,
// media, keys) private to its user, whatever umask it was started with.
func privateUmask() { syscall.Umask(0o077) }

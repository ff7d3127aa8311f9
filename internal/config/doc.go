// Package config owns the node's settings: one YAML file with secure
// defaults, written with comments on first start, where every setting can
// also be given as a command-line flag or a MATRIXOS_* environment variable.
// Precedence: flag, then environment, then file, then default.
package config

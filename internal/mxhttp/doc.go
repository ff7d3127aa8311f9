// Package mxhttp holds the HTTP plumbing every Matrix API package shares:
// the spec's error responses, JSON request decoding with size limits and the
// spec's error codes, JSON responses, CORS, and request logging.
package mxhttp

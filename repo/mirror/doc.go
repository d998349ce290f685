// Package mirror is a site mirror: it pulls an upstream repository as a TUF client, verifies everything and serves the last verified state.
package mirror

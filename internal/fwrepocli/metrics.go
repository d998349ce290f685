package fwrepocli

import "github.com/fwctl/fwctl/repo/server"

// metrics are fwrepo serve's Prometheus counters, served at /metrics on
// the serving address: requests and bytes by kind, timestamp re-signs and
// failures, device reports accepted and refused (repo/server.Metrics).
// One per process: fwrepo serves one repository.
var metrics = server.NewMetrics()

// Package fleet holds the fleet's rollouts, device tags and groups, operator credentials and per-device event history.
package fleet

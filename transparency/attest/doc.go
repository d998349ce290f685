// Package attest writes and verifies in-toto attestations for a release (its SBOM as a predicate, SLSA provenance v1) as Sigstore bundles logged in Rekor.
package attest

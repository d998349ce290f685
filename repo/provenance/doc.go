// Package provenance writes and verifies in-toto statements for a release: its SBOM as a predicate and SLSA provenance v1.
package provenance

// Package sbom parses and validates CycloneDX and SPDX SBOMs into one component list, and diffs two releases' lists.
package sbom

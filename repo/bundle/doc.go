// Package bundle writes offline update bundles: the root chain, metadata, images, deltas and transparency proofs in one file.
package bundle

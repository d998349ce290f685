// Package exposure answers "which devices are exposed to CVE-X?": it joins
// what devices report running (repo/inventory), the components of each
// release's SBOM (read from the verified published repository, checked
// against the hash in custom.fw.sbom, and stored per release when first
// read) and vulnerability data the operator gives it offline: OSV records
// (a file, a directory or an osv.dev zip export) and VEX statements
// (OpenVEX, CycloneDX VEX) marking components not affected.
//
// Version ranges are compared per ecosystem with maintained libraries
// (dpkg order for Debian/Ubuntu/Yocto packages, semver, Go module
// versions), never by hand. It never signs, publishes or changes a
// device's assignment: it only reads and reports.
package exposure

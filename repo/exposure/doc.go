// Package exposure joins the inventory with release SBOMs and offline OSV/VEX data: which devices are exposed to a CVE.
package exposure

// Package operator is fwrepo's operator API: authenticated changes to devices, tags and rollouts (deny by default).
package operator

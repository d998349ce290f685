package exposure

import (
	"cmp"
	"errors"
	"fmt"
	"strings"

	"github.com/Masterminds/semver/v3"
	debversion "github.com/knqyf263/go-deb-version"
	gosemver "golang.org/x/mod/semver"
)

// ErrUnknownEcosystem means an OSV ecosystem whose version order this
// package does not know: its ranges cannot be compared.
var ErrUnknownEcosystem = errors.New("unknown ecosystem")

// Ordering names how an ecosystem's versions compare.
type Ordering string

// The orderings this package compares with.
const (
	OrderDpkg   Ordering = "dpkg"   // Debian policy order (go-deb-version)
	OrderSemver Ordering = "semver" // semantic versions (Masterminds/semver)
	OrderGo     Ordering = "go"     // Go module versions (golang.org/x/mod/semver)
)

// ecosystems maps OSV ecosystem names (without their ":RELEASE" suffix)
// to the purl type of their packages and their version order.
var ecosystems = map[string]struct {
	purl  string
	order Ordering
}{
	"Debian":    {"deb", OrderDpkg},
	"Ubuntu":    {"deb", OrderDpkg},
	"Yocto":     {"yocto", OrderDpkg},
	"Go":        {"golang", OrderGo},
	"npm":       {"npm", OrderSemver},
	"crates.io": {"cargo", OrderSemver},
	"Hex":       {"hex", OrderSemver},
	"Pub":       {"pub", OrderSemver},
	"NuGet":     {"nuget", OrderSemver},
}

// Ecosystem returns the base name of an OSV ecosystem ("Debian:12" →
// "Debian"), the purl type of its packages and its version order, or an
// error wrapping ErrUnknownEcosystem.
func Ecosystem(osv string) (base, purlType string, order Ordering, err error) {
	base, _, _ = strings.Cut(osv, ":")
	e, ok := ecosystems[base]
	if !ok {
		return "", "", "", fmt.Errorf("%w %q: want one of Debian[:N], Ubuntu[:N], Yocto, Go, npm, crates.io, Hex, Pub, NuGet", ErrUnknownEcosystem, osv)
	}
	return base, e.purl, e.order, nil
}

// Compare orders versions a and b: -1, 0 or +1. "0" (OSV's "since the
// first version") is below every version. It fails on a version the
// ordering cannot parse.
func Compare(o Ordering, a, b string) (int, error) {
	if a == b {
		return 0, nil
	}
	if a == "0" {
		return -1, nil
	}
	if b == "0" {
		return 1, nil
	}
	switch o {
	case OrderDpkg:
		va, err := debversion.NewVersion(a)
		if err != nil {
			return 0, fmt.Errorf("dpkg version %q: %w", a, err)
		}
		vb, err := debversion.NewVersion(b)
		if err != nil {
			return 0, fmt.Errorf("dpkg version %q: %w", b, err)
		}
		return cmp.Compare(va.Compare(vb), 0), nil // go-deb-version returns any sign
	case OrderSemver:
		va, err := semver.StrictNewVersion(strings.TrimPrefix(a, "v"))
		if err != nil {
			return 0, fmt.Errorf("semver %q: %w", a, err)
		}
		vb, err := semver.StrictNewVersion(strings.TrimPrefix(b, "v"))
		if err != nil {
			return 0, fmt.Errorf("semver %q: %w", b, err)
		}
		return va.Compare(vb), nil
	case OrderGo:
		ga, gb := goVersion(a), goVersion(b)
		if !gosemver.IsValid(ga) {
			return 0, fmt.Errorf("module version %q (Go) is not a valid semantic version", a)
		}
		if !gosemver.IsValid(gb) {
			return 0, fmt.Errorf("module version %q (Go) is not a valid semantic version", b)
		}
		return gosemver.Compare(ga, gb), nil
	}
	return 0, fmt.Errorf("%w: ordering %q", ErrUnknownEcosystem, o)
}

// goVersion adds the "v" OSV's Go ecosystem leaves off.
func goVersion(v string) string {
	if strings.HasPrefix(v, "v") {
		return v
	}
	return "v" + v
}

// validVersion reports whether v parses in ordering o ("0" always does).
func validVersion(o Ordering, v string) error {
	if v == "0" {
		return nil
	}
	var err error
	switch o {
	case OrderDpkg:
		_, err = debversion.NewVersion(v)
	case OrderSemver:
		_, err = semver.StrictNewVersion(strings.TrimPrefix(v, "v"))
	case OrderGo:
		if !gosemver.IsValid(goVersion(v)) {
			err = errors.New("not a valid semantic version")
		}
	default:
		err = fmt.Errorf("%w: ordering %q", ErrUnknownEcosystem, o)
	}
	if err != nil {
		return fmt.Errorf("%s version %q: %w", o, v, err)
	}
	return nil
}

package inventory

// The tables behind 'fwrepo vulns import' and 'fwrepo exposure' (issue 16):
// imported vulnerability advisories and VEX statements, and the components
// of each release's SBOM, filled when the SBOM is first read so that an
// exposure query is an indexed lookup by (ecosystem, name). They are
// created on first use with CREATE TABLE IF NOT EXISTS, outside the
// numbered migrations: an older fwrepo ignores them. This file only stores
// and reads rows; what they mean (OSV ranges, VEX, version order) is
// repo/exposure's.

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
)

var exposureTables = []string{
	`CREATE TABLE IF NOT EXISTS vuln_advisories (
		id      TEXT PRIMARY KEY,
		summary TEXT NOT NULL,
		source  TEXT NOT NULL,
		record  TEXT NOT NULL
	)`,
	// names: the advisory's ID and aliases (CVE-…), for lookup by either.
	`CREATE TABLE IF NOT EXISTS vuln_names (
		name        TEXT NOT NULL,
		advisory_id TEXT NOT NULL,
		PRIMARY KEY (name, advisory_id)
	)`,
	`CREATE TABLE IF NOT EXISTS vex_statements (
		vuln          TEXT NOT NULL,
		product       TEXT NOT NULL,
		status        TEXT NOT NULL,
		justification TEXT NOT NULL,
		source        TEXT NOT NULL,
		PRIMARY KEY (vuln, product)
	)`,
	`CREATE TABLE IF NOT EXISTS sbom_releases (
		target        TEXT PRIMARY KEY,
		version       TEXT NOT NULL,
		hardware      TEXT NOT NULL,
		counter       INT64 NOT NULL,
		support_until TEXT NOT NULL,
		sbom_sha256   TEXT NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS release_components (
		target    TEXT NOT NULL,
		ecosystem TEXT NOT NULL,
		name      TEXT NOT NULL,
		version   TEXT NOT NULL,
		purl      TEXT NOT NULL
	)`,
	`CREATE INDEX IF NOT EXISTS release_components_name ON release_components (ecosystem, name)`,
	`CREATE INDEX IF NOT EXISTS release_components_target ON release_components (target)`,
}

// exposureReady remembers the DBs whose exposure tables exist.
var exposureReady sync.Map

func (d *DB) exposureSchema(ctx context.Context) error {
	if _, ok := exposureReady.Load(d); ok {
		return nil
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create exposure tables: %w", err)
	}
	defer tx.Rollback()
	if d.pg {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(schemaLock)); err != nil {
			return fmt.Errorf("create exposure tables: %w", err)
		}
	}
	for _, s := range exposureTables {
		if d.pg {
			s = pgStmt(s)
		} else {
			s = sqliteStmt(s)
		}
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("create exposure tables: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create exposure tables: %w", err)
	}
	exposureReady.Store(d, true)
	return nil
}

// Advisory is one stored vulnerability record: its ID, aliases, and the
// record itself (OSV JSON) for repo/exposure to interpret.
type Advisory struct {
	ID      string
	Aliases []string
	Summary string
	Source  string // the file it was imported from
	Record  []byte
}

// VEXStatement says that a vulnerability does not (or does) affect a
// product, named by purl (with or without version).
type VEXStatement struct {
	Vuln, Product, Status, Justification, Source string
}

// ImportVulns stores advisories and VEX statements in one transaction:
// on any error nothing of them is stored. A record with an ID already
// stored replaces it.
func (d *DB) ImportVulns(ctx context.Context, advs []Advisory, vex []VEXStatement) error {
	if err := d.exposureSchema(ctx); err != nil {
		return err
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("import vulnerabilities: %w", err)
	}
	defer tx.Rollback()
	for _, a := range advs {
		if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO vuln_advisories (id, summary, source, record) VALUES (?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET summary = excluded.summary, source = excluded.source, record = excluded.record`),
			a.ID, a.Summary, a.Source, string(a.Record)); err != nil {
			return fmt.Errorf("import %s from %s: %w", a.ID, a.Source, err)
		}
		if _, err := tx.ExecContext(ctx, d.q("DELETE FROM vuln_names WHERE advisory_id = ?"), a.ID); err != nil {
			return fmt.Errorf("import %s from %s: %w", a.ID, a.Source, err)
		}
		for _, n := range append([]string{a.ID}, a.Aliases...) {
			if _, err := tx.ExecContext(ctx, d.q("INSERT INTO vuln_names (name, advisory_id) VALUES (?, ?) ON CONFLICT DO NOTHING"), strings.ToUpper(n), a.ID); err != nil {
				return fmt.Errorf("import %s from %s: %w", a.ID, a.Source, err)
			}
		}
	}
	for _, v := range vex {
		if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO vex_statements (vuln, product, status, justification, source) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (vuln, product) DO UPDATE SET status = excluded.status, justification = excluded.justification, source = excluded.source`),
			strings.ToUpper(v.Vuln), v.Product, v.Status, v.Justification, v.Source); err != nil {
			return fmt.Errorf("import VEX statement for %s from %s: %w", v.Vuln, v.Source, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("import vulnerabilities: %w", err)
	}
	return nil
}

// Advisories returns the stored advisories whose ID or alias is name (any
// case), or all of them for an empty name, ordered by ID.
func (d *DB) Advisories(ctx context.Context, name string) ([]Advisory, error) {
	if err := d.exposureSchema(ctx); err != nil {
		return nil, err
	}
	var rows *sql.Rows
	var err error
	if name == "" {
		rows, err = d.db.QueryContext(ctx, "SELECT id, summary, source, record FROM vuln_advisories ORDER BY id")
	} else {
		rows, err = d.db.QueryContext(ctx, d.q(`SELECT a.id, a.summary, a.source, a.record FROM vuln_advisories a
			JOIN vuln_names n ON n.advisory_id = a.id WHERE n.name = ? ORDER BY a.id`), strings.ToUpper(name))
	}
	if err != nil {
		return nil, fmt.Errorf("read advisories: %w", err)
	}
	defer rows.Close()
	var out []Advisory
	for rows.Next() {
		var a Advisory
		var rec string
		if err := rows.Scan(&a.ID, &a.Summary, &a.Source, &rec); err != nil {
			return nil, fmt.Errorf("read advisories: %w", err)
		}
		a.Record = []byte(rec)
		out = append(out, a)
	}
	return out, rows.Err()
}

// VEX returns the stored statements about vulnerability names (IDs or
// aliases, any case).
func (d *DB) VEX(ctx context.Context, names []string) ([]VEXStatement, error) {
	if err := d.exposureSchema(ctx); err != nil {
		return nil, err
	}
	var out []VEXStatement
	for _, n := range names {
		rows, err := d.db.QueryContext(ctx, d.q("SELECT vuln, product, status, justification, source FROM vex_statements WHERE vuln = ?"), strings.ToUpper(n))
		if err != nil {
			return nil, fmt.Errorf("read VEX statements: %w", err)
		}
		for rows.Next() {
			var v VEXStatement
			if err := rows.Scan(&v.Vuln, &v.Product, &v.Status, &v.Justification, &v.Source); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read VEX statements: %w", err)
			}
			out = append(out, v)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// SBOMRelease is a release whose SBOM components are stored.
type SBOMRelease struct {
	Target, Version, Hardware string
	Counter                   uint64
	SupportUntil              string
	SBOMSHA256                string
}

// ReleaseComponent is one component of a release's SBOM.
type ReleaseComponent struct {
	Target, Ecosystem, Name, Version, PURL string
}

// SBOMReleases returns the releases whose components are stored, by target.
func (d *DB) SBOMReleases(ctx context.Context) ([]SBOMRelease, error) {
	if err := d.exposureSchema(ctx); err != nil {
		return nil, err
	}
	rows, err := d.db.QueryContext(ctx, "SELECT target, version, hardware, counter, support_until, sbom_sha256 FROM sbom_releases ORDER BY target")
	if err != nil {
		return nil, fmt.Errorf("read releases: %w", err)
	}
	defer rows.Close()
	var out []SBOMRelease
	for rows.Next() {
		var r SBOMRelease
		var c int64
		if err := rows.Scan(&r.Target, &r.Version, &r.Hardware, &c, &r.SupportUntil, &r.SBOMSHA256); err != nil {
			return nil, fmt.Errorf("read releases: %w", err)
		}
		r.Counter = uint64(c)
		out = append(out, r)
	}
	return out, rows.Err()
}

// StoreSBOMRelease stores a release and its components in one
// transaction, replacing what was stored for the same target.
func (d *DB) StoreSBOMRelease(ctx context.Context, r SBOMRelease, comps []ReleaseComponent) error {
	if err := d.exposureSchema(ctx); err != nil {
		return err
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store components of %s: %w", r.Target, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, d.q("DELETE FROM release_components WHERE target = ?"), r.Target); err != nil {
		return fmt.Errorf("store components of %s: %w", r.Target, err)
	}
	if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO sbom_releases (target, version, hardware, counter, support_until, sbom_sha256) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (target) DO UPDATE SET version = excluded.version, hardware = excluded.hardware, counter = excluded.counter,
		support_until = excluded.support_until, sbom_sha256 = excluded.sbom_sha256`),
		r.Target, r.Version, r.Hardware, int64(r.Counter), r.SupportUntil, r.SBOMSHA256); err != nil {
		return fmt.Errorf("store release %s: %w", r.Target, err)
	}
	// Multi-row inserts: 2,000 components are a handful of statements.
	const per = 200
	for i := 0; i < len(comps); i += per {
		chunk := comps[i:min(i+per, len(comps))]
		var b strings.Builder
		b.WriteString("INSERT INTO release_components (target, ecosystem, name, version, purl) VALUES ")
		args := make([]any, 0, 5*len(chunk))
		for j, c := range chunk {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("(?, ?, ?, ?, ?)")
			args = append(args, r.Target, c.Ecosystem, c.Name, c.Version, c.PURL)
		}
		if _, err := tx.ExecContext(ctx, d.q(b.String()), args...); err != nil {
			return fmt.Errorf("store components of %s: %w", r.Target, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store components of %s: %w", r.Target, err)
	}
	return nil
}

// ComponentsNamed returns the stored components with that ecosystem and
// name in every release (an indexed lookup).
func (d *DB) ComponentsNamed(ctx context.Context, ecosystem, name string) ([]ReleaseComponent, error) {
	if err := d.exposureSchema(ctx); err != nil {
		return nil, err
	}
	rows, err := d.db.QueryContext(ctx, d.q("SELECT target, ecosystem, name, version, purl FROM release_components WHERE ecosystem = ? AND name = ?"), ecosystem, name)
	if err != nil {
		return nil, fmt.Errorf("read components: %w", err)
	}
	defer rows.Close()
	var out []ReleaseComponent
	for rows.Next() {
		var c ReleaseComponent
		if err := rows.Scan(&c.Target, &c.Ecosystem, &c.Name, &c.Version, &c.PURL); err != nil {
			return nil, fmt.Errorf("read components: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// RunningDevice is what a device last reported running, with its tags.
type RunningDevice struct {
	ID, Hardware, Target, Version string
	Tags                          map[string]string
}

// Running returns every registered device with a report: the target and
// version of its running slot, and its tags, ordered by ID. It decodes only
// the fields it needs from the stored reports (verified when accepted).
func (d *DB) Running(ctx context.Context) ([]RunningDevice, error) {
	tags, err := d.allTags(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := d.db.QueryContext(ctx, "SELECT id, manifest FROM devices WHERE manifest IS NOT NULL ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	defer rows.Close()
	var out []RunningDevice
	for rows.Next() {
		var id string
		var env []byte
		if err := rows.Scan(&id, &env); err != nil {
			return nil, fmt.Errorf("list devices: %w", err)
		}
		var m struct {
			Manifest struct {
				Hardware    string `json:"hardware"`
				RunningSlot string `json:"running_slot"`
				Slots       map[string]struct {
					Target  string `json:"target"`
					Version string `json:"version"`
				} `json:"slots"`
			} `json:"manifest"`
		}
		if err := json.Unmarshal(env, &m); err != nil {
			return nil, fmt.Errorf("stored manifest of %s: %w", id, err)
		}
		s := m.Manifest.Slots[m.Manifest.RunningSlot]
		out = append(out, RunningDevice{ID: id, Hardware: m.Manifest.Hardware, Target: s.Target, Version: s.Version, Tags: tags[id]})
	}
	return out, rows.Err()
}

package repo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/fwctl/fwctl/repo/verify"
)

// ErrNoTarget means no staged target has the path given.
var ErrNoTarget = errors.New("no such target")

// ErrPublishedTarget means a target to remove is part of the published
// release: removing it withdraws it from devices, so it needs force.
var ErrPublishedTarget = errors.New("target is published")

// RemoveTarget unstages the target at tpath (as 'fwctl target list' shows
// it), from the top-level targets or the delegated role that holds it,
// with the deltas that rebuild it, and deletes the workspace's copies. A
// target the last publish released is removed only with force: the next
// publish withdraws it from every device that has not installed it yet
// (devices that did keep it, and keep its counter). Nothing is published
// until Publish.
func (ws *Workspace) RemoveTarget(tpath string, force bool) ([]Target, error) {
	staged, err := ws.stagedTargets()
	if err != nil {
		return nil, err
	}
	roles := append([]string{metadata.TARGETS}, verify.DelegatedNames(staged)...)
	for _, role := range roles {
		md := staged
		if role != metadata.TARGETS {
			if md, err = metadata.Targets().FromFile(ws.stagedRolePath(role)); errors.Is(err, os.ErrNotExist) {
				continue
			} else if err != nil {
				return nil, fmt.Errorf("read staged %s: %w", role, err)
			}
		}
		if _, ok := md.Signed.Targets[tpath]; !ok {
			continue
		}
		gone := []string{tpath}
		for p := range md.Signed.Targets {
			if strings.HasPrefix(p, tpath+".from-") && strings.HasSuffix(p, DeltaSuffix) {
				gone = append(gone, p)
			}
		}
		sort.Strings(gone)
		if !force {
			if pub, _ := metadata.Targets().FromFile(filepath.Join(ws.Dir, "metadata", role+".json")); pub != nil {
				if _, ok := pub.Signed.Targets[tpath]; ok {
					return nil, fmt.Errorf("%w: %s is in the published release (%s v%d); removing it withdraws it from devices that have not installed it yet: pass --force to do so",
						ErrPublishedTarget, tpath, role, pub.Signed.Version)
				}
			}
		}
		removed := map[string]*metadata.TargetFiles{}
		for _, p := range gone {
			removed[p] = md.Signed.Targets[p]
			delete(md.Signed.Targets, p)
		}
		path := ws.stagedTargetsPath()
		if role != metadata.TARGETS {
			path = ws.stagedRolePath(role)
		}
		if err := writeMetadata(path, md); err != nil {
			return nil, err
		}
		for _, p := range gone {
			os.Remove(filepath.Join(ws.Dir, "targets", filepath.FromSlash(p)))
		}
		return verify.ListTargets(removed), nil
	}
	return nil, fmt.Errorf("%w %q staged: 'fwctl target list' shows the target paths", ErrNoTarget, tpath)
}

//go:build !linux

package director

import "time"

func processCPU() time.Duration { return 0 }

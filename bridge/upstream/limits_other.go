//go:build !linux

package upstream

import (
	"errors"
	"time"
)

// errLimitsLinuxOnly refuses limits outside Linux: a configuration that
// bounds a server must not run it unbounded.
var errLimitsLinuxOnly = errors.New("limits are applied on Linux only: remove them from this server's configuration on this system")

func limitsSupported() error { return errLimitsLinuxOnly }

func applyLimits(_ int, l *Limits) error {
	if l == nil {
		return nil
	}
	return errLimitsLinuxOnly
}

func killedByCPULimit(error, time.Duration) bool { return false }

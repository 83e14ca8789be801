package cmd

import (
	"fmt"
	"time"
)

// checkTimeout refuses a --timeout that is not positive: it bounds a wait,
// and 0 or less ran out at once with an error about the cluster
// ("context deadline exceeded") instead of the flag.
func checkTimeout(cmd string, flag string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%s: --%s %s: accepted: a positive duration, e.g. 30s or 2m", cmd, flag, d)
	}
	return nil
}

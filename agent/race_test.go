//go:build race

package agent_test

// Under the race detector, vrssd is built with it too.
func init() { vrssdBuildFlags = append(vrssdBuildFlags, "-race") }

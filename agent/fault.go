package agent

import (
	"os"
	"syscall"
)

// EnvFault names the environment variable that makes vrssd kill itself
// (SIGKILL) when it reaches the named point, so that tests can prove what
// a crash at the worst moment leaves behind. The points:
//
//	create-made    create has made the TAP, not yet steered or saved it
//	steer-pinned   create or adopt has pinned the program, not attached it
//	port-published port set has published a TAP's policy, not saved it
//	afxdp-published port set has published an AF_XDP port's policy, not
//	               saved it
//
// It is read once, at start; production never sets it.
const EnvFault = "VRSSD_FAULT"

var fault = os.Getenv(EnvFault)

// faultPoint kills the process if EnvFault names point.
func faultPoint(point string) {
	if fault == point {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}

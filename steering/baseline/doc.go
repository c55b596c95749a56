// Package baseline holds the benchmark's baselines for the steering
// program: the bit-serial build (steering.BitSerial, a model of the
// bit-serial RSS programs in use today), the floor (steering.Floor, a
// program that returns 0) and the read floor (steering.ReadFloor, which
// only makes the steering program's first read of the frame). Importing it
// registers them with steering.LoadVariant:
//
//	import _ "github.com/vrss-dev/vrss/steering/baseline"
//
// Only the benchmark (internal/bench, vrss bench) and tests import it, so
// their objects are not in vrssd. steering/gen.go generates them, with the
// same flags as the production program.
package baseline

package agent

import (
	"log/slog"
	"sync"
	"time"
)

const (
	// refusalLogBurst refusals of one uid are logged per refusalLogWindow;
	// the rest are counted, and the count logged with the next line.
	refusalLogBurst  = 10
	refusalLogWindow = time.Minute
	// userIdle is how long a uid's rate and log state outlives its last
	// request.
	userIdle = 10 * time.Minute
)

// userLimits holds, per uid, a token bucket for requests and a window for
// refusal logging. Root and admins are not rate limited by the callers;
// their refusals are logged under the same limit.
type userLimits struct {
	rate float64 // requests per second; the bucket holds 2 seconds' worth, at least 1
	log  *slog.Logger

	mu    sync.Mutex
	users map[int]*userLimit
	swept time.Time
	now   func() time.Time
}

type userLimit struct {
	tokens     float64
	last       time.Time // of the last request
	logStart   time.Time // of the current refusal log window
	logged     int       // lines written in the window
	suppressed int       // lines not written since the last one written
}

func newUserLimits(rate float64, log *slog.Logger) *userLimits {
	return &userLimits{rate: rate, log: log, users: map[int]*userLimit{}, now: time.Now}
}

// get returns uid's state; l.mu is held.
func (l *userLimits) get(uid int, now time.Time) *userLimit {
	if now.Sub(l.swept) > userIdle {
		for id, u := range l.users {
			if now.Sub(u.last) > userIdle && now.Sub(u.logStart) > userIdle {
				if u.suppressed > 0 {
					l.log.Warn("refusals not logged", "uid", id, "count", u.suppressed)
				}
				delete(l.users, id)
			}
		}
		l.swept = now
	}
	u := l.users[uid]
	if u == nil {
		u = &userLimit{tokens: l.burst(), last: now}
		l.users[uid] = u
	}
	return u
}

// burst is the bucket's size: two seconds' worth, and never less than one
// request, or a rate below 0.5/s would refuse everything.
func (l *userLimits) burst() float64 { return max(2*l.rate, 1) }

// allow takes a token from uid's bucket, and reports whether there was one.
func (l *userLimits) allow(uid int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	u := l.get(uid, now)
	u.tokens = min(l.burst(), u.tokens+now.Sub(u.last).Seconds()*l.rate)
	u.last = now
	if u.tokens < 1 {
		return false
	}
	u.tokens--
	return true
}

// logRefusal calls write, with the number of refusals of uid not logged
// since its last line, unless uid has had refusalLogBurst lines logged in
// the current window; then it only counts.
func (l *userLimits) logRefusal(uid int, write func(suppressed int)) {
	l.mu.Lock()
	now := l.now()
	u := l.get(uid, now)
	if now.Sub(u.logStart) >= refusalLogWindow {
		u.logStart, u.logged = now, 0
	}
	if u.logged >= refusalLogBurst {
		u.suppressed++
		l.mu.Unlock()
		return
	}
	u.logged++
	n := u.suppressed
	u.suppressed = 0
	l.mu.Unlock()
	write(n)
}

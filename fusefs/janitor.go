package fusefs

import (
	"time"
)

// janitorTick returns how often the janitor runs: a quarter of the
// shortest delay it enforces, between 10 ms and 5 s.
func (m *Manager) janitorTick() time.Duration {
	d := min(m.o.IdleDelay, m.o.Lifespan) / 4
	return min(max(d, 10*time.Millisecond), 5*time.Second)
}

// janitor drops expired clean local copies, retries failed uploads and
// unmounts idle views until the manager's context is cancelled.
func (m *Manager) janitor() {
	defer m.wg.Done()
	t := time.NewTicker(m.janitorTick())
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case now := <-t.C:
			m.unmountIdle(now)
			m.cache.sweep(m.ctx, now)
		}
	}
}

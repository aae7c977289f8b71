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

// checkpointEvery is how often the contiguous prefix of each copy being
// written is made durable (see cache.checkpoint): what a crash may lose.
const checkpointEvery = time.Second

// checkpointer runs cache.checkpoint every checkpointEvery until the
// manager's context is cancelled.
func (m *Manager) checkpointer() {
	defer m.wg.Done()
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
			m.cache.checkpoint(m.ctx)
			m.cache.touchStaged(m.ctx)
		}
	}
}

// janitor drops expired local copies (clean ones and interrupted uploads)
// and unmounts idle views until the manager's context is cancelled. It
// never uploads.
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
			m.cache.sweepStaged(m.ctx, now)
		}
	}
}

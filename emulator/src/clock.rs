//! The emulator's virtual clock: real time times a speed factor, plus explicit advances.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

/// A clock whose time runs at `speed` × real time and can be advanced by hand.
///
/// Speed 0 pauses it: time then moves only by [`VirtualClock::advance`], which is what tests
/// and evals use to step the world deterministically.
#[derive(Debug)]
pub struct VirtualClock {
    inner: Mutex<ClockState>,
}

#[derive(Debug)]
struct ClockState {
    /// Virtual time at `anchor_real`.
    anchor_virtual: OffsetDateTime,
    anchor_real: Instant,
    speed: f64,
}

impl VirtualClock {
    /// A clock that reads `start` now and runs at `speed` × real time (0 = paused).
    pub fn new(start: OffsetDateTime, speed: f64) -> Self {
        Self { inner: Mutex::new(ClockState { anchor_virtual: start, anchor_real: Instant::now(), speed: speed.max(0.0) }) }
    }

    /// Current virtual time.
    pub fn now(&self) -> OffsetDateTime {
        let state = self.lock();
        now_of(&state)
    }

    /// Move virtual time forward by `by`, on top of its running.
    pub fn advance(&self, by: Duration) -> OffsetDateTime {
        let mut state = self.lock();
        let now = now_of(&state) + by;
        state.anchor_virtual = now;
        state.anchor_real = Instant::now();
        now
    }

    /// Change the speed factor from now on (0 pauses).
    pub fn set_speed(&self, speed: f64) {
        let mut state = self.lock();
        state.anchor_virtual = now_of(&state);
        state.anchor_real = Instant::now();
        state.speed = speed.max(0.0);
    }

    /// The speed factor.
    pub fn speed(&self) -> f64 {
        self.lock().speed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClockState> {
        // The state is two plain values; a panic elsewhere cannot leave it half-written.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn now_of(state: &ClockState) -> OffsetDateTime {
    let real = state.anchor_real.elapsed().as_secs_f64();
    state.anchor_virtual + Duration::from_secs_f64(real * state.speed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn paused_clock_moves_only_when_advanced() {
        let clock = VirtualClock::new(datetime!(2026-01-01 00:00 UTC), 0.0);
        assert_eq!(clock.now(), datetime!(2026-01-01 00:00 UTC));
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.now(), datetime!(2026-01-01 00:01:30 UTC));
    }

    #[test]
    fn speed_change_keeps_time_continuous() {
        let clock = VirtualClock::new(datetime!(2026-01-01 00:00 UTC), 0.0);
        clock.set_speed(0.0);
        assert_eq!(clock.now(), datetime!(2026-01-01 00:00 UTC));
        assert_eq!(clock.speed(), 0.0);
    }
}

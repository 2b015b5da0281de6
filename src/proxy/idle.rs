//! An idle limit for a body read by polling: the clock starts only when a
//! read finds nothing ready, and stops at the next item. A body that is
//! always ready (most of them) never arms a timer.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::Sleep;

pub struct IdleTimer {
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl IdleTimer {
    pub fn new(idle: Duration) -> Self {
        Self { idle, timer: None }
    }

    /// An item arrived: the wait is over.
    pub fn activity(&mut self) {
        self.timer = None;
    }

    /// Nothing was ready: true once the wait has lasted the idle limit
    /// (the caller is woken then otherwise).
    pub fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let idle = self.idle;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        if timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        self.timer = None;
        true
    }
}

//! A bounded queue of frames for one port's receiver.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Frames waiting for one port, oldest first, at most `capacity` of them.
/// A frame that does not fit (queue full, or no memory for it) is dropped
/// and counted.
#[derive(Clone, Debug)]
pub struct FrameQueue {
    frames: VecDeque<Vec<u8>>,
    capacity: usize,
    dropped: u64,
    queued: u64,
}

impl FrameQueue {
    /// An empty queue holding at most `capacity` frames.
    pub fn new(capacity: usize) -> Self {
        Self {
            frames: VecDeque::new(),
            capacity,
            dropped: 0,
            queued: 0,
        }
    }

    /// Queues a copy of `frame`; `false` (and counted) if it was dropped.
    pub fn push(&mut self, frame: &[u8]) -> bool {
        if self.frames.len() >= self.capacity || self.frames.try_reserve(1).is_err() {
            self.dropped += 1;
            return false;
        }
        let mut f = Vec::new();
        if f.try_reserve_exact(frame.len()).is_err() {
            self.dropped += 1;
            return false;
        }
        f.extend_from_slice(frame);
        self.frames.push_back(f);
        self.queued += 1;
        true
    }

    /// Takes the oldest frame.
    pub fn pop(&mut self) -> Option<Vec<u8>> {
        self.frames.pop_front()
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether no frame waits.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Most frames it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Frames dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Frames ever queued.
    pub fn queued(&self) -> u64 {
        self.queued
    }

    /// Forgets every waiting frame (the receiver was reset).
    pub fn clear(&mut self) {
        self.frames.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_fifo() {
        let mut q = FrameQueue::new(2);
        assert!(q.push(&[1]));
        assert!(q.push(&[2, 2]));
        assert!(!q.push(&[3]));
        assert_eq!((q.len(), q.dropped(), q.queued()), (2, 1, 2));
        assert_eq!(q.pop().as_deref(), Some(&[1u8][..]));
        assert!(q.push(&[4]));
        assert_eq!(q.pop().as_deref(), Some(&[2u8, 2][..]));
        assert_eq!(q.pop().as_deref(), Some(&[4u8][..]));
        assert_eq!(q.pop(), None);
    }
}

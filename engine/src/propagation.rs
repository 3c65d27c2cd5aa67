//! Propagation (the paper's "propagate the masklet through the video"): which way it runs, what a
//! caller asks of it and how it ended — the official `propagate_in_video` arguments, typed.

/// The way a propagation runs through the clip, and so the way a tracked frame was reached: the
/// memory bank reads the frames behind it in this direction (the official `reverse` flag).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Towards later frames.
    #[default]
    Forward,
    /// Towards earlier frames (`reverse=True`).
    Reverse,
}

impl Direction {
    /// The official `reverse` flag.
    pub fn is_reverse(self) -> bool {
        self == Direction::Reverse
    }

    /// From the official `reverse` flag, as scripts spell it.
    pub fn from_reverse(reverse: bool) -> Direction {
        if reverse {
            Direction::Reverse
        } else {
            Direction::Forward
        }
    }

    /// Whether `frame` lies beyond `from` in this direction (strictly).
    pub fn is_beyond(self, frame: usize, from: usize) -> bool {
        match self {
            Direction::Forward => frame > from,
            Direction::Reverse => frame < from,
        }
    }
}

/// A propagation request: the official `propagate_in_video` arguments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Propagation {
    /// Default: the earliest prompted frame of any object.
    pub start_frame: Option<usize>,
    pub direction: Direction,
    /// Default: the whole clip. `n` visits up to n + 1 frames (the official counting).
    pub max_frames: Option<usize>,
}

impl Propagation {
    /// The frames a propagation from `start` visits in a clip of `num_frames`, in order (the
    /// official counting: `max_frames` n visits up to n + 1 frames; reverse from frame 0 visits
    /// nothing).
    pub(crate) fn frames(&self, start: usize, num_frames: usize) -> Vec<usize> {
        let max_frames = self.max_frames.unwrap_or(num_frames);
        match self.direction {
            Direction::Reverse => {
                let end = start.saturating_sub(max_frames);
                if start > 0 {
                    (end..=start).rev().collect()
                } else {
                    Vec::new()
                }
            }
            Direction::Forward => {
                let end = start
                    .saturating_add(max_frames)
                    .min(num_frames.saturating_sub(1));
                (start..=end).collect()
            }
        }
    }
}

/// How a propagation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropagationEnd {
    Completed { frames: usize },
    Cancelled { frames: usize },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_follow_the_official_counting() {
        let forward = |start, max| Propagation {
            start_frame: Some(start),
            direction: Direction::Forward,
            max_frames: max,
        };
        let reverse = |start, max| Propagation {
            direction: Direction::Reverse,
            ..forward(start, max)
        };
        assert_eq!(forward(3, None).frames(3, 6), vec![3, 4, 5]);
        assert_eq!(forward(3, Some(1)).frames(3, 6), vec![3, 4]);
        assert_eq!(reverse(3, None).frames(3, 6), vec![3, 2, 1, 0]);
        assert_eq!(reverse(3, Some(1)).frames(3, 6), vec![3, 2]);
        assert!(reverse(0, None).frames(0, 6).is_empty());
    }
}

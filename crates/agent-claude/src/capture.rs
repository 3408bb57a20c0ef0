//! Bounded capture of a child's output: lines of stdout up to a size, the tail of stderr.
//!
//! An agent may print gigabytes, or one line of gigabytes; what is kept never grows past the
//! configured cap.

use std::collections::VecDeque;

/// One line handed on by a [`LineSplitter`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// A whole line, without its `\n`.
    Complete(&'a [u8]),
    /// A line longer than the cap: its bytes were dropped, only its length is known.
    Oversized { len: usize },
}

/// Splits a byte stream into lines, keeping at most `cap` bytes of any one line.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
    cap: usize,
    /// The length of the current line when it has outgrown the cap and is being skipped.
    skipping: Option<usize>,
}

impl LineSplitter {
    pub(crate) fn new(cap: usize) -> LineSplitter {
        LineSplitter {
            pending: Vec::new(),
            cap: cap.max(1),
            skipping: None,
        }
    }

    /// Feeds the next bytes; `on_line` gets every line they complete.
    pub(crate) fn push(&mut self, mut bytes: &[u8], mut on_line: impl FnMut(Line<'_>)) {
        while !bytes.is_empty() {
            let newline = bytes.iter().position(|&byte| byte == b'\n');
            let (segment, rest, ends_line) = match newline {
                Some(at) => (&bytes[..at], &bytes[at + 1..], true),
                None => (bytes, &[][..], false),
            };
            bytes = rest;
            if let Some(len) = &mut self.skipping {
                *len += segment.len();
            } else if self.pending.len() + segment.len() > self.cap {
                self.skipping = Some(self.pending.len() + segment.len());
                // Give the memory back: an oversized line must not keep a cap-sized buffer.
                self.pending = Vec::new();
            } else if ends_line && self.pending.is_empty() {
                // The common case: a whole line inside one read, handed on without a copy.
                on_line(Line::Complete(segment));
                continue;
            } else {
                self.pending.extend_from_slice(segment);
            }
            if ends_line {
                self.end_line(&mut on_line);
            }
        }
    }

    /// Hands on a last line that had no `\n`, if any.
    pub(crate) fn finish(&mut self, mut on_line: impl FnMut(Line<'_>)) {
        if self.skipping.is_some() || !self.pending.is_empty() {
            self.end_line(&mut on_line);
        }
    }

    fn end_line(&mut self, on_line: &mut impl FnMut(Line<'_>)) {
        match self.skipping.take() {
            Some(len) => on_line(Line::Oversized { len }),
            None => on_line(Line::Complete(&self.pending)),
        }
        self.pending.clear();
    }
}

/// The last `cap` bytes of a stream.
#[derive(Debug)]
pub(crate) struct Tail {
    kept: VecDeque<u8>,
    cap: usize,
}

impl Tail {
    pub(crate) fn new(cap: usize) -> Tail {
        Tail {
            kept: VecDeque::new(),
            cap,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(self.cap)..];
        let overflow = (self.kept.len() + bytes.len()).saturating_sub(self.cap);
        self.kept.drain(..overflow.min(self.kept.len()));
        self.kept.extend(bytes);
    }

    /// What is kept, as text (invalid UTF-8 replaced).
    pub(crate) fn text(&self) -> String {
        let (front, back) = self.kept.as_slices();
        let mut bytes = Vec::with_capacity(self.kept.len());
        bytes.extend_from_slice(front);
        bytes.extend_from_slice(back);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(cap: usize, chunks: &[&[u8]]) -> Vec<String> {
        let mut splitter = LineSplitter::new(cap);
        let mut lines = Vec::new();
        let mut record = |line: Line<'_>| {
            lines.push(match line {
                Line::Complete(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                Line::Oversized { len } => format!("<{len} bytes>"),
            })
        };
        for chunk in chunks {
            splitter.push(chunk, &mut record);
        }
        splitter.finish(&mut record);
        lines
    }

    #[test]
    fn lines_across_reads_are_joined() {
        assert_eq!(
            split(100, &[b"ab", b"c\nde", b"f\n\ngh"]),
            vec!["abc", "def", "", "gh"]
        );
    }

    #[test]
    fn a_line_past_the_cap_is_skipped_whole_and_the_next_line_survives() {
        assert_eq!(
            split(4, &[b"ok\n123", b"4567", b"89\nfine\n"]),
            vec!["ok", "<9 bytes>", "fine"]
        );
        assert_eq!(split(4, &[b"12345"]), vec!["<5 bytes>"]);
        assert_eq!(split(4, &[b"1234\n"]), vec!["1234"]);
    }

    #[test]
    fn an_oversized_line_keeps_no_buffer() {
        let mut splitter = LineSplitter::new(8);
        splitter.push(b"1234567", |_| {});
        splitter.push(b"89abcdef", |_| {});
        assert_eq!(splitter.pending.capacity(), 0);
    }

    #[test]
    fn tail_keeps_the_last_bytes() {
        let mut tail = Tail::new(5);
        tail.push(b"abc");
        tail.push(b"defg");
        assert_eq!(tail.text(), "cdefg");
        tail.push(b"0123456789");
        assert_eq!(tail.text(), "56789");
        tail.push(b"\xff");
        assert_eq!(tail.text(), "6789\u{fffd}");
    }
}

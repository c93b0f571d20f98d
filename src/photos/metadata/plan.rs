//! The output as a list of input ranges and written bytes, so an untouched photo comes back
//! borrowed and the pixel data is never re-encoded.

use std::borrow::Cow;
use std::ops::Range;

/// What the output is made of: ranges of the input, and the few bytes we write ourselves.
#[derive(Default)]
pub(super) struct Plan {
    pieces: Vec<Piece>,
}

pub(super) enum Piece {
    Keep(Range<usize>),
    Write(Vec<u8>),
}

impl Plan {
    pub(super) fn keep(&mut self, range: Range<usize>) {
        if let Some(Piece::Keep(last)) = self.pieces.last_mut() {
            if last.end == range.start {
                last.end = range.end;
                return;
            }
        }
        self.pieces.push(Piece::Keep(range));
    }

    pub(super) fn write(&mut self, bytes: Vec<u8>) {
        self.pieces.push(Piece::Write(bytes));
    }

    pub(super) fn apply(self, input: &[u8]) -> Cow<'_, [u8]> {
        if let [Piece::Keep(all)] = self.pieces.as_slice() {
            if *all == (0..input.len()) {
                return Cow::Borrowed(input);
            }
        }
        let len = self
            .pieces
            .iter()
            .map(|p| match p {
                Piece::Keep(r) => r.len(),
                Piece::Write(b) => b.len(),
            })
            .sum();
        let mut out = Vec::with_capacity(len);
        for piece in &self.pieces {
            match piece {
                Piece::Keep(r) => out.extend_from_slice(&input[r.clone()]),
                Piece::Write(b) => out.extend_from_slice(b),
            }
        }
        Cow::Owned(out)
    }
}

//! A small deterministic mutation fuzzer for parsers, run as ordinary tests (no nightly, no
//! cargo-fuzz): a seeded xorshift generator and mutations that tend to hit parser edge cases in
//! JSON and header text (truncation, byte flips, spliced copies, extreme numbers, deep nesting,
//! odd escapes). The same seed always gives the same inputs, so a failure names its case.

/// xorshift64*: tiny, fast, and good enough to pick mutations.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Fragments that parsers of JSON and header values mishandle.
const INTERESTING: &[&str] = &[
    "",
    "\"",
    "\\",
    "\\u0000",
    "\\ud800",
    "\u{fffd}",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "null",
    "true",
    "-1",
    "0",
    "-0",
    "1e999",
    "-1e999",
    "1.5",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "340282366920938463463374607431768211456",
    "\"sha256:\"",
    "\"sha256:zz\"",
    "\"sha512:00\"",
    "\"application/vnd.oci.image.index.v1+json\"",
    "\"application/vnd.oci.image.manifest.v1+json\"",
    "\"application/vnd.docker.distribution.manifest.v1+prettyjws\"",
    "\"mediaType\"",
    "\"manifests\"",
    "\"layers\"",
    "\"config\"",
    "\"platform\"",
    "\"size\"",
    "\"digest\"",
    "\"expires_in\"",
    "\"token\"",
    "=",
    "Bearer ",
    "Basic ",
    "realm=",
    "realm=\"",
    "scope=\"a,b\"",
    ", ,",
    "\r\n",
];

/// `seed` changed in one to four ways.
pub fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(9) {
            // Truncate.
            0 => {
                let at = rng.below(out.len() + 1);
                out.truncate(at);
            }
            // Flip a byte.
            1 if !out.is_empty() => {
                let at = rng.below(out.len());
                out[at] ^= 1 << rng.below(8);
            }
            // Replace a byte with anything.
            2 if !out.is_empty() => {
                let at = rng.below(out.len());
                out[at] = rng.next_u64() as u8;
            }
            // Insert an interesting fragment.
            3 | 4 => {
                let at = rng.below(out.len() + 1);
                let frag = rng.pick(INTERESTING).as_bytes();
                out.splice(at..at, frag.iter().copied());
            }
            // Replace a run of digits (a number) with an interesting fragment.
            5 => {
                if let Some(start) =
                    find_from(&out, rng.below(out.len() + 1), |b| b.is_ascii_digit())
                {
                    let end = (start..out.len())
                        .find(|&i| !out[i].is_ascii_digit())
                        .unwrap_or(out.len());
                    let frag = rng.pick(INTERESTING).as_bytes();
                    out.splice(start..end, frag.iter().copied());
                }
            }
            // Copy a slice of the input somewhere else (duplicated keys, repeated arrays).
            6 if !out.is_empty() => {
                let a = rng.below(out.len());
                let b = (a + rng.below(64) + 1).min(out.len());
                let piece = out[a..b].to_vec();
                let at = rng.below(out.len() + 1);
                out.splice(at..at, piece);
            }
            // Wrap in deep nesting.
            7 => {
                let depth = 1 + rng.below(300);
                let mut nested = vec![b'['; depth];
                nested.extend_from_slice(&out);
                nested.extend(std::iter::repeat_n(b']', depth));
                out = nested;
            }
            // Random bytes.
            _ => {
                let n = rng.below(32);
                let at = rng.below(out.len() + 1);
                let junk: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                out.splice(at..at, junk);
            }
        }
    }
    out
}

fn find_from(bytes: &[u8], from: usize, pred: impl Fn(u8) -> bool) -> Option<usize> {
    (from..bytes.len())
        .chain(0..from.min(bytes.len()))
        .find(|&i| pred(bytes[i]))
}

/// Bytes for a failure message: text where printable, escaped otherwise, at most 2000 chars.
pub fn show(bytes: &[u8]) -> String {
    let s: String = bytes.escape_ascii().to_string();
    s.chars().take(2000).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_varied() {
        let seed = br#"{"a":[1,2,3],"b":"c"}"#;
        let run = |s| {
            let mut rng = Rng::new(s);
            (0..50).map(|_| mutate(&mut rng, seed)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let distinct: std::collections::BTreeSet<_> = run(7).into_iter().collect();
        assert!(distinct.len() > 40);
    }
}

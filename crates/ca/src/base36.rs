//! Fixed-width base-36 (digits and lower-case letters) for the parts of a join
//! token: compact, case-insensitive-looking and free of punctuation, so a token
//! survives copy and paste from a terminal.

const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// The number of base-36 digits that can hold any `bytes`-long big-endian number.
pub(crate) const fn width(bytes: usize) -> usize {
    // log(256)/log(36) ≈ 1.5474; 15474/10000 rounded up per byte count.
    (bytes * 15474).div_ceil(10000)
}

/// `bytes` as a big-endian number, written in exactly `width(bytes.len())` digits.
pub(crate) fn encode(bytes: &[u8]) -> String {
    let mut num = bytes.to_vec();
    let mut digits = Vec::with_capacity(width(bytes.len()));
    for _ in 0..width(bytes.len()) {
        // Long division of the whole number by 36, most significant byte first.
        let mut rem: u32 = 0;
        for b in num.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 36) as u8;
            rem = cur % 36;
        }
        digits.push(ALPHABET[rem as usize]);
    }
    digits.reverse();
    digits.into_iter().map(char::from).collect()
}

/// Why a base-36 field did not decode.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    Length { expected: usize, found: usize },
    Character(char),
    Overflow,
}

/// The inverse of [`encode`]: exactly `width(N)` digits into `N` bytes.
pub(crate) fn decode<const N: usize>(text: &str) -> Result<[u8; N], DecodeError> {
    let expected = width(N);
    let found = text.chars().count();
    if found != expected {
        return Err(DecodeError::Length { expected, found });
    }
    let mut out = [0u8; N];
    for c in text.chars() {
        let digit = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'a'..='z' => c as u32 - 'a' as u32 + 10,
            _ => return Err(DecodeError::Character(c)),
        };
        // out = out * 36 + digit, least significant byte last.
        let mut carry = digit;
        for b in out.iter_mut().rev() {
            let cur = u32::from(*b) * 36 + carry;
            *b = (cur & 0xff) as u8;
            carry = cur >> 8;
        }
        if carry != 0 {
            return Err(DecodeError::Overflow);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_match_swarm_token_fields() {
        // A SHA-256 digest and a 128-bit secret, as in Swarm's SWMTKN-1 tokens.
        assert_eq!(width(32), 50);
        assert_eq!(width(16), 25);
    }

    #[test]
    fn round_trips_edge_values() {
        for bytes in [[0u8; 16], [0xff; 16], {
            let mut b = [0u8; 16];
            b[15] = 35;
            b
        }] {
            let text = encode(&bytes);
            assert_eq!(text.len(), 25);
            assert_eq!(decode::<16>(&text), Ok(bytes));
        }
        assert_eq!(encode(&[0u8; 16]), "0".repeat(25));
    }

    #[test]
    fn refuses_bad_text() {
        assert_eq!(
            decode::<16>("abc"),
            Err(DecodeError::Length {
                expected: 25,
                found: 3
            })
        );
        assert_eq!(
            decode::<16>(&format!("{}A", "0".repeat(24))),
            Err(DecodeError::Character('A'))
        );
        // 36^25 - 1 is larger than 2^128 - 1.
        assert_eq!(decode::<16>(&"z".repeat(25)), Err(DecodeError::Overflow));
    }

    proptest::proptest! {
        #[test]
        fn any_digest_round_trips(bytes in proptest::array::uniform32(proptest::num::u8::ANY)) {
            proptest::prop_assert_eq!(decode::<32>(&encode(&bytes)), Ok(bytes));
        }
    }
}

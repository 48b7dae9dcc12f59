//! A recovery shard as people handle it: the text `spike:<id>:<64 hex digits>` (SPIKE's
//! format), parsed once into a [`RecoveryShard`] whose bytes are zeroized on drop.
//!
//! Nothing here ever puts shard bytes or hex digits into an error, a `Debug` string or
//! anything else that could end up on a terminal or in a log.

use std::str::FromStr;

use zeroize::Zeroizing;

/// Bytes in a shard.
pub const SHARD_LEN: usize = 32;

/// What a shard looks like, for error messages.
const FORMAT: &str = "spike:<id>:<64 hex digits>, as written by `spike operator recover`";

/// Why a shard was refused. No variant holds shard material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// No shard was given at all.
    #[error("no recovery shard was given (expected {FORMAT})")]
    Empty,
    /// It does not start with `spike:` or has no second `:`.
    #[error("this is not a recovery shard (expected {FORMAT})")]
    NotAShard,
    /// The id is not a number from 1 to 255.
    #[error("the shard id is not a number from 1 to 255 (expected {FORMAT})")]
    BadId,
    /// The hex part has the wrong length.
    #[error("the shard has {0} hex digits after its id; it needs exactly 64 (expected {FORMAT})")]
    BadLength(usize),
    /// The hex part holds something that is not a hex digit.
    #[error("the shard holds a character that is not a hex digit (expected {FORMAT})")]
    NotHex,
    /// Nexus sent a shard that is not 32 bytes.
    #[error("Nexus sent shard {id} with {len} bytes instead of 32; nothing was written")]
    WrongSize {
        /// The shard's id.
        id: u8,
        /// How many bytes it had.
        len: usize,
    },
    /// Nexus sent shard id 0, which Shamir shares never use.
    #[error("Nexus sent a shard with id 0; nothing was written")]
    ZeroId,
}

/// One recovery shard: its id (1..=255) and 32 bytes.
pub struct RecoveryShard {
    id: u8,
    bytes: Zeroizing<[u8; SHARD_LEN]>,
}

impl std::fmt::Debug for RecoveryShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryShard")
            .field("id", &self.id)
            .field("bytes", &"[REDACTED]")
            .finish()
    }
}

impl RecoveryShard {
    /// A shard from Nexus's answer: a non-zero id and exactly 32 bytes.
    pub fn new(id: u8, bytes: &[u8]) -> Result<Self, ShardError> {
        if id == 0 {
            return Err(ShardError::ZeroId);
        }
        let mut shard = Zeroizing::new([0u8; SHARD_LEN]);
        if bytes.len() != SHARD_LEN {
            return Err(ShardError::WrongSize {
                id,
                len: bytes.len(),
            });
        }
        shard.copy_from_slice(bytes);
        Ok(RecoveryShard { id, bytes: shard })
    }

    /// The shard's id.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// The shard's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..]
    }

    /// The text form, `spike:<id>:<64 lowercase hex digits>` plus a newline, as stored in a
    /// recovery file.
    pub fn to_line(&self) -> Zeroizing<String> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        // Sized up front so the string never reallocates (a reallocation would leave a copy
        // behind that is not zeroized).
        let mut line = Zeroizing::new(String::with_capacity(6 + 4 + 2 * SHARD_LEN + 1));
        line.push_str("spike:");
        line.push_str(&self.id.to_string());
        line.push(':');
        for byte in self.bytes.iter() {
            line.push(char::from(DIGITS[usize::from(byte >> 4)]));
            line.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        line.push('\n');
        line
    }

    /// The file name for this shard in a recovery directory.
    pub fn file_name(&self) -> String {
        file_name(self.id)
    }
}

/// `spike.recovery.<id>.txt`.
pub fn file_name(id: u8) -> String {
    format!("spike.recovery.{id}.txt")
}

/// Whether `name` is a recovery file name, `spike.recovery.<id>.txt`.
pub fn is_file_name(name: &str) -> bool {
    name.strip_prefix("spike.recovery.")
        .and_then(|rest| rest.strip_suffix(".txt"))
        .is_some_and(|id| id.parse::<u8>().is_ok_and(|id| id > 0))
}

/// Parses `spike:<id>:<hex>`. Whitespace around it (a trailing newline, a pasted space) is
/// ignored; hex digits may be upper or lower case.
impl FromStr for RecoveryShard {
    type Err = ShardError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
        if text.is_empty() {
            return Err(ShardError::Empty);
        }
        let (id, hex) = text
            .strip_prefix("spike:")
            .and_then(|rest| rest.split_once(':'))
            .ok_or(ShardError::NotAShard)?;
        // Digits only: `u8::from_str` would also take a leading `+`.
        if id.is_empty() || id.len() > 3 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ShardError::BadId);
        }
        let id = match id.parse::<u8>() {
            Ok(id) if id > 0 => id,
            _ => return Err(ShardError::BadId),
        };
        let hex = hex.as_bytes();
        if hex.len() != 2 * SHARD_LEN {
            // A count of characters (not bytes), so a stray multi-byte character reads right.
            let len = String::from_utf8_lossy(hex).chars().count();
            return Err(ShardError::BadLength(len));
        }
        let mut bytes = Zeroizing::new([0u8; SHARD_LEN]);
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            let (Some(high), Some(low)) = (nibble(pair[0]), nibble(pair[1])) else {
                return Err(ShardError::NotHex);
            };
            *byte = (high << 4) | low;
        }
        Ok(RecoveryShard { id, bytes })
    }
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210";

    fn bytes() -> Vec<u8> {
        (0..SHARD_LEN)
            .map(|i| u8::from_str_radix(&HEX[2 * i..2 * i + 2], 16).expect("test hex is valid"))
            .collect()
    }

    #[test]
    fn round_trip() {
        let shard = RecoveryShard::new(3, &bytes()).expect("valid shard");
        let line = shard.to_line();
        assert_eq!(line.as_str(), format!("spike:3:{HEX}\n"));
        let back: RecoveryShard = line.parse().expect("parses its own output");
        assert_eq!(back.id(), 3);
        assert_eq!(back.bytes(), &bytes()[..]);
        let upper: RecoveryShard = format!("  spike:255:{}\r\n", HEX.to_uppercase())
            .parse()
            .expect("upper case and whitespace");
        assert_eq!(upper.id(), 255);
        assert_eq!(upper.bytes(), &bytes()[..]);
    }

    #[test]
    fn malformed_shards_are_refused_without_echo() {
        let cases = [
            (String::new(), ShardError::Empty),
            ("\n".to_owned(), ShardError::Empty),
            (HEX.to_owned(), ShardError::NotAShard),
            (format!("spike-1-{HEX}"), ShardError::NotAShard),
            (format!("SPIKE:1:{HEX}"), ShardError::NotAShard),
            (format!("spike:{HEX}"), ShardError::NotAShard),
            (format!("spike:0:{HEX}"), ShardError::BadId),
            (format!("spike:256:{HEX}"), ShardError::BadId),
            (format!("spike:+1:{HEX}"), ShardError::BadId),
            (format!("spike:-1:{HEX}"), ShardError::BadId),
            (format!("spike::{HEX}"), ShardError::BadId),
            (format!("spike:0001:{HEX}"), ShardError::BadId),
            (format!("spike:1:{}", &HEX[..62]), ShardError::BadLength(62)),
            (format!("spike:1:{HEX}00"), ShardError::BadLength(66)),
            (format!("spike:1:{}zz", &HEX[..62]), ShardError::NotHex),
            (format!("spike:1:{}é", &HEX[..62]), ShardError::NotHex),
            (
                format!("spike:1:{}é", &HEX[..61]),
                ShardError::BadLength(62),
            ),
            (format!("spike:1:{}:", &HEX[..63]), ShardError::NotHex),
        ];
        for (text, want) in cases {
            let got = text.parse::<RecoveryShard>().map(|s| s.id());
            assert_eq!(got, Err(want.clone()), "{text:?}");
            let message = want.to_string();
            assert!(!message.contains(&HEX[..16]), "{message}");
            assert!(message.contains("spike:<id>:<64 hex digits>"), "{message}");
        }
    }

    #[test]
    fn shards_from_nexus_are_checked() {
        assert_eq!(
            RecoveryShard::new(1, &[0; 31]).map(|s| s.id()),
            Err(ShardError::WrongSize { id: 1, len: 31 })
        );
        assert_eq!(
            RecoveryShard::new(0, &[0; 32]).map(|s| s.id()),
            Err(ShardError::ZeroId)
        );
    }

    #[test]
    fn debug_is_redacted() {
        let shard = RecoveryShard::new(2, &bytes()).expect("valid shard");
        let debug = format!("{shard:?}");
        assert!(
            debug.contains("REDACTED") && debug.contains("id: 2"),
            "{debug}"
        );
        assert!(!debug.contains("17"), "{debug}");
    }

    #[test]
    fn file_names() {
        assert_eq!(file_name(7), "spike.recovery.7.txt");
        assert!(is_file_name("spike.recovery.7.txt"));
        assert!(is_file_name("spike.recovery.255.txt"));
        for other in [
            "spike.recovery.0.txt",
            "spike.recovery.256.txt",
            "spike.recovery..txt",
            "spike.recovery.1.txt.bak",
            "notes.txt",
        ] {
            assert!(!is_file_name(other), "{other}");
        }
    }
}

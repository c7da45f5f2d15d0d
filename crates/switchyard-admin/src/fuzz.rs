//! The admin request bodies as the endpoints read them, for the fuzz targets and the replay
//! of their corpus: bytes in, every body type parsed, the kill body validated. No I/O.

use crate::request::parse;
use crate::{actions, change, kill};

/// How many of the body types accepted `bytes`. Never panics, whatever the bytes.
pub fn admin_bodies(bytes: &[u8]) -> usize {
    let mut accepted = 0;
    if let Ok(body) = parse::<kill::KillBody>(bytes) {
        accepted += usize::from(kill::validate(body, "route", "fuzz").is_ok());
    }
    accepted += usize::from(parse::<kill::ReviveBody>(bytes).is_ok());
    accepted += usize::from(parse::<change::ShiftBody>(bytes).is_ok());
    accepted += usize::from(parse::<change::RuleBody>(bytes).is_ok());
    accepted += usize::from(parse::<actions::ReloadBody>(bytes).is_ok());
    accepted += usize::from(parse::<actions::AckBody>(bytes).is_ok());
    accepted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_parsed_as_the_endpoints_do() {
        assert_eq!(
            admin_bodies(b"  "),
            5,
            "empty: every default but the kill's reason"
        );
        assert_eq!(admin_bodies(br#"{"reason":"drill"}"#), 5);
        assert_eq!(admin_bodies(br#"{"reason":"x","percent":"NaN"}"#), 0);
        assert_eq!(admin_bodies(br#"{"note":"seen"}"#), 1);
    }
}

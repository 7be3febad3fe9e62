//! Which room versions Conifer runs.

use ruma::room_version_rules::RoomVersionRules;
use ruma::RoomVersionId;

/// Room versions 6 to 12: those Ruma's state resolution fully supports.
/// Versions 1–5 are not advertised (Ruma supports them only as best effort).
pub const SUPPORTED_VERSIONS: [&str; 7] = ["6", "7", "8", "9", "10", "11", "12"];

pub fn is_supported(version: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&version)
}

/// The rules of a supported version, `None` otherwise.
pub fn rules_for(version: &str) -> Option<(RoomVersionId, RoomVersionRules)> {
    if !is_supported(version) {
        return None;
    }
    let id = RoomVersionId::try_from(version).ok()?;
    let rules = id.rules()?;
    Some((id, rules))
}

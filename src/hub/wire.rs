//! What travels between replicas and sits in history, in the one format
//! every door reads: a message body and a member's presence info, each a
//! JSON object serialised once by the replica that accepted it.

use super::names::DisplayName;
use serde::Serialize;

/// The body of a room message: everything but `type` and `id`, which are
/// only known or fixed on delivery.
#[derive(Serialize)]
pub struct MessageBody<'a> {
    pub room: &'a str,
    pub user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub message: &'a str,
    pub server: &'a str,
    pub timestamp: &'a str,
}

/// Who a member is, as presence lists and events show it.
#[derive(Serialize)]
pub struct MemberInfo<'a> {
    pub user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub server: &'a str,
}

impl MemberInfo<'_> {
    pub fn encode(user: &str, name: Option<&DisplayName>, server: &str) -> bytes::Bytes {
        let info = MemberInfo {
            user,
            name: name.map(DisplayName::as_str),
            server,
        };
        // Copied to an exact-size buffer: kept for the session's lifetime.
        bytes::Bytes::copy_from_slice(
            &serde_json::to_vec(&info).expect("member infos always serialise"),
        )
    }
}

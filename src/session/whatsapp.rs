//! Calling WhatsApp from a device session: every call has a deadline, is timed, and maps
//! whatsapp-rust's errors onto the session errors the API answers with. Also the block-list
//! IQs, sent through whatsapp-rust's public IQ machinery because its own block-list calls do
//! not return the list's hash.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node, NodeContent, NodeRef, Server};
use whatsapp_rust::Client;
use whatsapp_rust::features::ContactError;
use whatsapp_rust::request::{InfoQuery, InfoQueryType};

use super::state::SessionError;

impl From<ContactError> for SessionError {
    fn from(err: ContactError) -> Self {
        match err {
            ContactError::Iq(iq) => iq.into(),
            other => SessionError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<whatsapp_rust::features::GroupError> for SessionError {
    fn from(err: whatsapp_rust::features::GroupError) -> Self {
        use whatsapp_rust::features::GroupError;
        match err {
            GroupError::Iq(iq) => iq.into(),
            other => SessionError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<whatsapp_rust::features::CommunityError> for SessionError {
    fn from(err: whatsapp_rust::features::CommunityError) -> Self {
        use whatsapp_rust::features::CommunityError;
        match err {
            CommunityError::Iq(iq) => iq.into(),
            CommunityError::Group(group) => group.into(),
            other => SessionError::Internal(anyhow::Error::new(other)),
        }
    }
}

/// Runs one WhatsApp call with the session's deadline, recording its latency under `kind`.
pub async fn call<T, E>(
    kind: &'static str,
    timeout: Duration,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, SessionError>
where
    E: Into<SessionError>,
{
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout, work).await;
    crate::metrics::command_latency(kind, started.elapsed().as_secs_f64());
    match outcome {
        Err(_) => Err(SessionError::Timeout),
        Ok(Err(err)) => Err(err.into()),
        Ok(Ok(value)) => Ok(value),
    }
}

/// The block list as WhatsApp answers it: its hash and the blocked users' JIDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocklist {
    pub dhash: String,
    pub items: Vec<String>,
}

fn blocklist_query(
    kind: InfoQueryType,
    item: Option<Node>,
    timeout: Duration,
) -> InfoQuery<'static> {
    InfoQuery {
        namespace: "blocklist",
        query_type: kind,
        to: Jid::new("", Server::Pn),
        target: None,
        id: None,
        content: item.map(|node| NodeContent::Nodes(vec![node])),
        timeout: Some(timeout),
    }
}

/// Reads `<list dhash><item jid/>...</list>` out of a block-list answer.
pub fn parse_blocklist(answer: &NodeRef<'_>) -> Result<Blocklist, SessionError> {
    let list = answer.get_optional_child("list").ok_or_else(|| {
        SessionError::Internal(anyhow::anyhow!("block-list answer without <list>"))
    })?;
    let dhash = list
        .get_attr("dhash")
        .map(|v| v.as_str().into_owned())
        .unwrap_or_default();
    let items = list
        .get_children_by_tag("item")
        .filter_map(|item| item.get_attr("jid").map(|v| v.as_str().into_owned()))
        .collect();
    Ok(Blocklist { dhash, items })
}

/// Fetches the whole block list.
pub async fn get_blocklist(
    client: &Arc<Client>,
    timeout: Duration,
) -> Result<Blocklist, SessionError> {
    let answer = call(
        "blocklist_get",
        timeout,
        client.send_iq(blocklist_query(InfoQueryType::Get, None, timeout)),
    )
    .await?;
    parse_blocklist(answer.get())
}

/// Blocks or unblocks a user by LID (with the phone-number JID when known, as WhatsApp wants
/// for blocks) and answers the list WhatsApp returns.
pub async fn change_blocklist(
    client: &Arc<Client>,
    timeout: Duration,
    block: bool,
    lid_jid: &str,
    pn_jid: Option<&str>,
) -> Result<Blocklist, SessionError> {
    let action = if block { "block" } else { "unblock" };
    let mut item = NodeBuilder::new("item")
        .attr("action", action)
        .attr("jid", lid_jid.to_owned());
    if block && let Some(pn) = pn_jid {
        item = item.attr("pn_jid", pn.to_owned());
    }
    let answer = call(
        action,
        timeout,
        client.send_iq(blocklist_query(
            InfoQueryType::Set,
            Some(item.build()),
            timeout,
        )),
    )
    .await?;
    parse_blocklist(answer.get())
}

/// A change announced by a block-list notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlocklistNotification {
    pub dhash: String,
    /// `None`: the list changed in a way not itemized (`action="modify"`): fetch it again.
    pub changes: Option<Vec<(String, bool)>>,
}

/// Reads an `account_sync` notification's `<blocklist>` child, if it has one.
pub fn parse_blocklist_notification(node: &NodeRef<'_>) -> Option<BlocklistNotification> {
    if node.tag.as_ref() != "notification" {
        return None;
    }
    let list = node.get_optional_child("blocklist")?;
    let dhash = list.get_attr("dhash").map(|v| v.as_str().into_owned())?;
    let modify = list
        .get_attr("action")
        .is_some_and(|v| v.as_str() == "modify");
    let changes: Vec<(String, bool)> = list
        .get_children_by_tag("item")
        .filter_map(|item| {
            let jid = item.get_attr("jid")?.as_str().into_owned();
            let blocked = item.get_attr("action")?.as_str() == "block";
            Some((jid, blocked))
        })
        .collect();
    Some(BlocklistNotification {
        dhash,
        changes: (!modify && !changes.is_empty()).then_some(changes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wacore_binary::marshal::{marshal, unmarshal_ref};

    fn round_trip(node: &Node) -> Vec<u8> {
        marshal(node).expect("marshal")
    }

    #[test]
    fn block_list_answers_and_notifications_parse() {
        let answer = NodeBuilder::new("iq")
            .children([NodeBuilder::new("list")
                .attr("dhash", "2:abc")
                .children([NodeBuilder::new("item").attr("jid", "1@lid").build()])
                .build()])
            .build();
        let bytes = round_trip(&answer);
        let parsed = parse_blocklist(&unmarshal_ref(&bytes[1..]).expect("decode")).expect("parse");
        assert_eq!(parsed.dhash, "2:abc");
        assert_eq!(parsed.items, vec!["1@lid".to_owned()]);

        let notification = NodeBuilder::new("notification")
            .attr("type", "account_sync")
            .children([NodeBuilder::new("blocklist")
                .attr("dhash", "2:def")
                .children([
                    NodeBuilder::new("item")
                        .attr("jid", "2@lid")
                        .attr("action", "block")
                        .build(),
                    NodeBuilder::new("item")
                        .attr("jid", "1@lid")
                        .attr("action", "unblock")
                        .build(),
                ])
                .build()])
            .build();
        let bytes = round_trip(&notification);
        let parsed = parse_blocklist_notification(&unmarshal_ref(&bytes[1..]).expect("decode"))
            .expect("a block-list notification");
        assert_eq!(parsed.dhash, "2:def");
        assert_eq!(
            parsed.changes,
            Some(vec![
                ("2@lid".to_owned(), true),
                ("1@lid".to_owned(), false)
            ])
        );

        let other = NodeBuilder::new("notification")
            .attr("type", "account_sync")
            .build();
        let bytes = round_trip(&other);
        assert_eq!(
            parse_blocklist_notification(&unmarshal_ref(&bytes[1..]).expect("decode")),
            None
        );
    }
}

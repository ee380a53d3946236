//! Small helpers for reading and building binary stanzas.

use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Node, NodeContent};

/// The server's own JID, as the `from` of its answers.
pub const SERVER: &str = "s.whatsapp.net";

/// An attribute as text.
pub fn attr(node: &Node, name: &str) -> Option<String> {
    node.attrs.get(name).map(ToString::to_string)
}

/// The children of a node (empty when it has none).
pub fn children(node: &Node) -> &[Node] {
    node.children().unwrap_or(&[])
}

/// The first child with this tag.
pub fn child<'a>(node: &'a Node, tag: &str) -> Option<&'a Node> {
    node.get_optional_child(tag)
}

/// Byte content of a node.
pub fn bytes(node: &Node) -> Option<&[u8]> {
    match &node.content {
        Some(NodeContent::Bytes(b)) => Some(b),
        Some(NodeContent::String(s)) => Some(s.as_bytes()),
        _ => None,
    }
}

/// Byte content of a child.
pub fn child_bytes<'a>(node: &'a Node, tag: &str) -> Option<&'a [u8]> {
    child(node, tag).and_then(bytes)
}

/// Text content of a node.
pub fn text(node: &Node) -> Option<String> {
    match &node.content {
        Some(NodeContent::String(s)) => Some(s.to_string()),
        Some(NodeContent::Bytes(b)) => String::from_utf8(b.clone()).ok(),
        _ => None,
    }
}

/// `<iq type="result" id from>children</iq>`.
pub fn iq_result(id: &str, from: &str, content: Vec<Node>) -> Node {
    let builder = NodeBuilder::new("iq")
        .attr("from", from.to_owned())
        .attr("type", "result")
        .attr("id", id.to_owned());
    if content.is_empty() {
        builder.build()
    } else {
        builder.children(content).build()
    }
}

/// `<iq type="error" id from><error code text/></iq>`.
pub fn iq_error(id: &str, from: &str, code: u16, text: &str) -> Node {
    NodeBuilder::new("iq")
        .attr("from", from.to_owned())
        .attr("type", "error")
        .attr("id", id.to_owned())
        .children([NodeBuilder::new("error")
            .attr("code", code.to_string())
            .attr("text", text.to_owned())
            .build()])
        .build()
}

/// The text WhatsApp pairs with an error code.
pub fn error_text(code: u16) -> &'static str {
    match code {
        400 => "bad-request",
        401 => "not-authorized",
        403 => "forbidden",
        404 => "item-not-found",
        405 => "not-allowed",
        406 => "not-acceptable",
        409 => "conflict",
        429 => "rate-overlimit",
        500 => "internal-server-error",
        501 => "feature-not-implemented",
        503 => "service-unavailable",
        _ => "error",
    }
}

/// A (user, server) pair out of a JID string, with any device or agent suffix dropped.
pub fn split_jid(jid: &str) -> (String, String) {
    let (user, server) = jid.split_once('@').unwrap_or((jid, SERVER));
    let user = user.split([':', '.']).next().unwrap_or(user);
    let user = user.split('_').next().unwrap_or(user);
    (user.to_owned(), server.to_owned())
}

/// The device number of a JID (`123:4@s.whatsapp.net` is 4), 0 when absent.
pub fn jid_device(jid: &str) -> u16 {
    jid.split('@')
        .next()
        .and_then(|user| user.split_once(':'))
        .and_then(|(_, device)| device.parse().ok())
        .unwrap_or(0)
}

//! The walk-through: curl calls with the sandbox's real token, device and numbers filled in.
//! The same text is printed for a person to paste and, with `--check`, run by bash step by step,
//! each answer checked, so what is printed is what is proven to work.

use std::fmt::Write as _;
use std::process::Stdio;

use anyhow::{Context, bail};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::world::World;

/// What the calls need to know.
pub struct Setting<'a> {
    pub gateway: String,
    pub control: String,
    pub receiver: String,
    pub token: String,
    pub device: String,
    pub webhook_secret: String,
    pub world: &'a World,
}

/// Who a step talks to.
enum Target {
    /// The gateway's API, as the tenant's admin.
    Gateway,
    /// wa-sim's control API: the simulated phone, or other people.
    WaSim,
}

/// One call of the walk-through.
struct Step {
    section: Option<&'static str>,
    comment: String,
    target: Target,
    method: &'static str,
    path: String,
    body: Option<String>,
    /// Keep `jq -r <filter>` of the answer in a shell variable (`NAME=$(curl ...)`).
    capture: Option<(&'static str, &'static str)>,
    /// A jq condition the answer must meet under `--check` (besides `success: true`).
    expect: Option<String>,
}

impl Step {
    fn gateway(comment: impl Into<String>, method: &'static str, path: impl Into<String>) -> Self {
        Self {
            section: None,
            comment: comment.into(),
            target: Target::Gateway,
            method,
            path: path.into(),
            body: None,
            capture: None,
            expect: None,
        }
    }

    fn sim(comment: impl Into<String>, method: &'static str, path: impl Into<String>) -> Self {
        Self {
            target: Target::WaSim,
            ..Self::gateway(comment, method, path)
        }
    }

    fn section(mut self, title: &'static str) -> Self {
        self.section = Some(title);
        self
    }

    fn body(mut self, body: serde_json::Value) -> Self {
        self.body = Some(body.to_string());
        self
    }

    /// A body that names a shell variable captured earlier (`$GROUP`).
    fn raw_body(mut self, body: &str) -> Self {
        self.body = Some(body.to_owned());
        self
    }

    fn capture(mut self, variable: &'static str, filter: &'static str) -> Self {
        self.capture = Some((variable, filter));
        self
    }

    fn expect(mut self, condition: impl Into<String>) -> Self {
        self.expect = Some(condition.into());
        self
    }

    /// The command as printed and as run.
    fn command(&self) -> String {
        let base = match self.target {
            Target::Gateway => "$WUTS",
            Target::WaSim => "$SIM",
        };
        let mut curl = String::from("curl -s");
        if self.method != "GET" {
            let _ = write!(curl, " -X {}", self.method);
        }
        let _ = write!(curl, " \"{base}{}\"", self.path);
        if matches!(self.target, Target::Gateway) {
            curl.push_str(" -H \"Authorization: Bearer $TOKEN\"");
        }
        if let Some(body) = &self.body {
            curl.push_str(" -H 'content-type: application/json'");
            if body.contains('$') {
                let _ = write!(curl, " -d \"{}\"", body.replace('"', "\\\""));
            } else {
                let _ = write!(curl, " -d '{}'", body.replace('\'', r"'\''"));
            }
        }
        match self.capture {
            Some((variable, filter)) => {
                format!(
                    "{variable}=$({curl} | jq -r '{filter}') && echo \"{variable}=${variable}\""
                )
            }
            None => format!("{curl} | jq"),
        }
    }
}

fn steps(s: &Setting<'_>) -> Vec<Step> {
    let w = s.world;
    let device = "?device_id=$DEVICE";
    vec![
        Step::gateway(
            "The device is paired with the simulated phone and connected",
            "GET",
            format!("/status{device}"),
        )
        .section("Your device")
        .expect(r#".data.status == "connected""#),
        Step::gateway(
            "The same device object as every device route answers",
            "GET",
            "/devices/$DEVICE",
        )
        .expect(".device.connected == true"),
        Step::gateway(
            "Events to the sandbox's receiver (it checks each signature and prints the event here)",
            "POST",
            format!("/webhook{device}"),
        )
        .section("Events")
        .body(serde_json::json!({
            "webhook_url": format!("{}/webhook", s.receiver),
            "enabled_events": ["*"],
            "secret": s.webhook_secret,
        }))
        .expect(".webhook.enabled == true"),
        Step::gateway(
            format!(
                "Who is on WhatsApp: {} is, {} is not (numbers in any common format)",
                w.ana.name, w.nobody
            ),
            "POST",
            format!("/contact/check{device}"),
        )
        .section("Contacts")
        .body(serde_json::json!({"numbers": ["+55 11 99000-0002", w.nobody]}))
        .expect(format!(
            r#".data["{}"] == true and .data["{}"] == false"#,
            w.ana.phone, w.nobody
        )),
        Step::gateway(
            format!(
                "Resolve {}'s LID (learned from the group you share) and {}'s number",
                w.ana.name, w.bruno.name
            ),
            "POST",
            format!("/contacts/resolve{device}"),
        )
        .body(serde_json::json!({"jids": [w.ana.lid_jid, w.bruno.phone]}))
        .expect(format!(
            r#"[.items[].phone_number] | index("{}") != null"#,
            w.ana.phone
        )),
        Step::gateway(
            format!("{}'s business profile", w.bakery.name),
            "GET",
            format!("/contacts/profile{device}&number={}", w.bakery.phone),
        )
        .expect(".data.business_profile != null"),
        Step::gateway(
            format!("Block {}", w.bruno.name),
            "POST",
            format!("/contacts/block{device}"),
        )
        .body(serde_json::json!({"number": w.bruno.phone}))
        .expect(".data.blocked == true"),
        Step::gateway(
            "The block list, with phone numbers and LIDs",
            "GET",
            format!("/contacts/blocklist{device}"),
        )
        .expect(format!(
            r#"[.data.items[].phone_number] | index("{}") != null"#,
            w.bruno.phone
        )),
        Step::gateway(
            format!(
                "Your groups: {}'s group and community are there",
                w.carla.name
            ),
            "GET",
            format!("/groups{device}"),
        )
        .section("Groups and communities")
        .expect(format!(
            r#"[.groups[].jid] | index("{}") != null"#,
            w.group_jid
        )),
        Step::gateway(
            format!("Create a community with {} in it", w.ana.name),
            "POST",
            format!("/communities{device}"),
        )
        .body(serde_json::json!({
            "name": "Sandbox Book Club",
            "description": "Made from the sandbox walk-through",
            "participants": [w.ana.phone],
        }))
        .capture("COMMUNITY", ".community.jid")
        .expect(r#"endswith("@g.us")"#),
        Step::gateway(
            format!("Add {} to it", w.diego.name),
            "POST",
            format!("/communities/$COMMUNITY/participants{device}"),
        )
        .body(serde_json::json!({"participants": [w.diego.phone]}))
        .expect(r#".participants[0].status == "ok""#),
        Step::gateway(
            "Create a group",
            "POST",
            format!("/groups{device}"),
        )
        .body(serde_json::json!({
            "name": "Sandbox Book Club: Mondays",
            "participants": [w.ana.phone],
        }))
        .capture("GROUP", ".group.jid")
        .expect(r#"endswith("@g.us")"#),
        Step::gateway(
            "Link the group into the community",
            "POST",
            format!("/communities/$COMMUNITY/groups{device}"),
        )
        .raw_body(r#"{"group_jid":"$GROUP"}"#)
        .expect(".linked | length == 1"),
        Step::gateway(
            "The community's members across its groups",
            "GET",
            format!("/communities/$COMMUNITY/participants{device}"),
        )
        .expect(".participants | length >= 3"),
        Step::sim(
            format!("The phone blocks {} (WhatsApp tells the device)", w.diego.name),
            "POST",
            format!("/accounts/{}/blocklist", w.you.phone),
        )
        .section("Acting as the phone and as other people (wa-sim's control API)")
        .body(serde_json::json!({"action": "block", "jid": format!("{}@s.whatsapp.net", w.diego.phone)}))
        .expect(format!(
            r#".items | index("{}") != null"#,
            w.diego.lid_jid
        )),
        Step::sim(
            format!(
                "{} adds {} to her community (a group.info event arrives)",
                w.carla.name, w.diego.name
            ),
            "POST",
            format!("/groups/{}/actions", w.community_jid),
        )
        .body(serde_json::json!({
            "actor_phone": w.carla.phone,
            "action": "add",
            "participants": [w.diego.phone],
        }))
        .expect(".outcomes[0].error == null"),
        Step::sim(
            format!("{} sends you a message (his push name is learned)", w.diego.name),
            "POST",
            format!("/accounts/{}/messages", w.you.phone),
        )
        .body(serde_json::json!({"from_phone": w.diego.phone})),
        Step::gateway(
            format!("{} is on the block list now, with the number", w.diego.name),
            "GET",
            format!("/contacts/blocklist{device}"),
        )
        .expect(format!(
            r#"[.data.items[].phone_number] | index("{}") != null"#,
            w.diego.phone
        )),
        Step::gateway(
            "Every event of the device, oldest first (also replayable after a receiver was down)",
            "GET",
            format!("/events{device}&limit=100"),
        )
        .expect(".events | length > 0"),
    ]
}

/// The variables every step uses, as an `export` line.
fn preamble(s: &Setting<'_>) -> String {
    format!(
        "export WUTS={} TOKEN={} DEVICE={} SIM={}",
        s.gateway, s.token, s.device, s.control
    )
}

/// The walk-through as printed.
pub fn render(s: &Setting<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Paste into a shell (needs curl and jq). device_id may be left out while the tenant has one device."
    );
    let _ = writeln!(out, "{}", preamble(s));
    for step in steps(s) {
        if let Some(section) = step.section {
            let _ = writeln!(out, "\n# ── {section} ──");
        }
        let _ = writeln!(out, "\n# {}", step.comment);
        let _ = writeln!(out, "{}", step.command());
    }
    out
}

/// Runs every step with bash, as printed, and checks its answer; returns how many ran.
pub async fn check(s: &Setting<'_>) -> anyhow::Result<usize> {
    let mut captured: Vec<String> = Vec::new();
    let all = steps(s);
    for (n, step) in all.iter().enumerate() {
        let script = format!(
            "set -o pipefail\n{}\n{}\n{}\n",
            preamble(s),
            captured.join("\n"),
            step.command()
        );
        let output = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .await
            .context("running bash")?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let shown = format!(
            "step {} ({}):\n{}\nanswered:\n{stdout}{stderr}",
            n + 1,
            step.comment,
            step.command()
        );
        if !output.status.success() {
            bail!("{shown}\nexited with {}", output.status);
        }
        let answer = match step.capture {
            Some((variable, _)) => {
                let value = stdout
                    .trim()
                    .strip_prefix(&format!("{variable}="))
                    .unwrap_or_default()
                    .to_owned();
                if value.is_empty() || value == "null" {
                    bail!("{shown}\ncaptured nothing into {variable}");
                }
                captured.push(format!("{variable}={value}"));
                serde_json::Value::String(value)
            }
            None => {
                let answer: serde_json::Value =
                    serde_json::from_str(&stdout).with_context(|| format!("{shown}\nnot JSON"))?;
                let failed = match step.target {
                    Target::Gateway => answer["success"] != serde_json::Value::Bool(true),
                    Target::WaSim => answer.get("error").is_some(),
                };
                if failed {
                    bail!("{shown}\nthe call did not succeed");
                }
                answer
            }
        };
        if let Some(condition) = &step.expect
            && !jq_holds(condition, &answer).await?
        {
            bail!("{shown}\ndoes not meet `{condition}`");
        }
        println!("  ✓ {}. {}", n + 1, step.comment);
    }
    Ok(all.len())
}

/// Whether `jq -e condition` holds for the answer.
async fn jq_holds(condition: &str, answer: &serde_json::Value) -> anyhow::Result<bool> {
    let mut child = Command::new("jq")
        .arg("-e")
        .arg(condition)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running jq")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(answer.to_string().as_bytes()).await?;
    }
    let output = child.wait_with_output().await?;
    if output.status.code() == Some(3) || output.status.code() == Some(2) {
        bail!(
            "jq refused `{condition}`: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output.status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_with_a_variable_are_double_quoted() {
        let step = Step::gateway("link", "POST", "/communities/$COMMUNITY/groups")
            .raw_body(r#"{"group_jid":"$GROUP"}"#);
        assert_eq!(
            step.command(),
            r#"curl -s -X POST "$WUTS/communities/$COMMUNITY/groups" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' -d "{\"group_jid\":\"$GROUP\"}" | jq"#
        );
        let plain = Step::sim("block", "POST", "/accounts/1/blocklist")
            .body(serde_json::json!({"action": "block"}))
            .capture("X", ".a");
        let quoted =
            Step::gateway("name", "POST", "/groups").body(serde_json::json!({"name": "Ana's"}));
        assert!(
            quoted.command().contains(r#"-d '{"name":"Ana'\''s"}'"#),
            "{}",
            quoted.command()
        );
        assert_eq!(
            plain.command(),
            r#"X=$(curl -s -X POST "$SIM/accounts/1/blocklist" -H 'content-type: application/json' -d '{"action":"block"}' | jq -r '.a') && echo "X=$X""#
        );
    }
}

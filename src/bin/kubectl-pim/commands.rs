//! One function per command: read, call `kubepim::ops`, print. Formatting lives in `output.rs`.
use std::collections::BTreeMap;
use std::io::Write as _;

use anyhow::{Context as _, Result};
use chrono::Utc;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use kubepim::api::{ActivationRequest, Decision, Eligibility, Phase, PrivilegedRole};
use kubepim::ops::{self, NewRequest, OpsError, Refusal, RefusalKind};
use serde_json::json;

use kubepim::policy::approvals::{Purpose, required, required_for};

use crate::cli::{
    ApproveArgs, Command, DenyArgs, ExtendArgs, FootholdsArgs, LsArgs, NameArg, Output, OutputArgs,
    RequestArgs, ReviewCommand, ReviewDecideArgs, ReviewListArgs, ShowArgs, exit,
};
use crate::output;

fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .context("writing to stdout")?;
    out.flush().context("writing to stdout")
}

fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Runs a command that needs the cluster; returns the exit code.
pub async fn run(command: Command, client: Client) -> Result<u8> {
    match command {
        Command::Roles(args) => roles(&client, args).await,
        Command::Request(args) => request(&client, args).await,
        Command::Approve(ApproveArgs { name, reason }) => {
            decide(&client, &name, Decision::Approved, reason.as_deref()).await
        }
        Command::Deny(DenyArgs { name, reason }) => {
            decide(&client, &name, Decision::Denied, Some(&reason)).await
        }
        Command::Cancel(NameArg { name }) => cancel(&client, &name).await,
        Command::Extend(args) => extend(&client, args).await,
        Command::Ls(args) => ls(&client, args).await,
        Command::Show(args) => show(&client, args).await,
        Command::Review(ReviewCommand::List(args)) => review_list(&client, args).await,
        Command::Review(ReviewCommand::Decide(args)) => review_decide(&client, args).await,
        Command::Footholds(args) => footholds(&client, args).await,
        // Handled in main without a cluster.
        Command::Completion { .. } => Ok(exit::OK),
    }
}

/// Approvals a request for `purpose` needs, per readable role. Best effort: an identity that may
/// not list roles still gets its requests listed.
async fn required_approvals(client: &Client, purpose: Purpose) -> BTreeMap<String, u32> {
    let roles = Api::<PrivilegedRole>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    roles
        .iter()
        .map(|r| (r.name_any(), required_for(&r.spec, purpose)))
        .collect()
}

async fn roles(client: &Client, args: OutputArgs) -> Result<u8> {
    let me = ops::who_am_i(client).await?;
    let roles = Api::<PrivilegedRole>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing PrivilegedRoles")?
        .items;
    let eligibilities = Api::<Eligibility>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing Eligibilities")?
        .items;
    let mine = ops::activatable(&me, &roles, &eligibilities, Utc::now());
    let text = match args.output {
        Some(f @ (Output::Json | Output::Yaml)) => {
            output::document(&mine, f).map_err(anyhow::Error::msg)?
        }
        wide => output::roles_table(&mine, wide == Some(Output::Wide)),
    };
    print(&text)?;
    Ok(exit::OK)
}

async fn request(client: &Client, args: RequestArgs) -> Result<u8> {
    let me = ops::who_am_i(client).await?;
    let new = NewRequest {
        role: args.role,
        namespaces: args.namespaces,
        duration: args.duration,
        justification: args.reason,
        ticket: args.ticket,
        start_at: args.at.map(|at| at.resolve(Utc::now())),
        extends: None,
        name: args.name,
    };
    create_and_follow(client, &new, &me, args.wait.then_some(args.timeout)).await
}

async fn extend(client: &Client, args: ExtendArgs) -> Result<u8> {
    let me = ops::who_am_i(client).await?;
    let original = ops::get(client, &args.name).await?;
    let new = ops::extension_of(&original, args.duration, args.reason, args.ticket);
    create_and_follow(client, &new, &me, args.wait.then_some(args.timeout)).await
}

/// Creates the request; with `wait`, shows its progress until it is Active (0), ends (3) or the
/// wait times out (4).
async fn create_and_follow(
    client: &Client,
    new: &NewRequest,
    me: &kubepim::api::Requester,
    wait: Option<kube::core::Duration>,
) -> Result<u8> {
    let created = ops::create(client, new, me).await?;
    let name = created.name_any();
    print(&format!("activationrequest.kubepim.io/{name} created\n"))?;
    let Some(timeout) = wait else {
        return Ok(exit::OK);
    };
    let purpose = Purpose::of(&created.spec);
    let required = required_approvals(client, purpose)
        .await
        .get(&new.role)
        .copied();
    let mut seen = output::Seen::default();
    let done = |ar: &ActivationRequest| {
        ar.phase()
            .is_some_and(|p| p == Phase::Active || p.is_terminal())
    };
    let report = |ar: &ActivationRequest| {
        for line in output::progress(&mut seen, ar, required, Utc::now()) {
            say(&line);
        }
    };
    let last = ops::wait_until(client, &name, timeout.into(), done, report).await?;
    match last.phase() {
        Some(Phase::Active) => Ok(exit::OK),
        // The progress line already said how it ended.
        _ => Ok(exit::REFUSED),
    }
}

async fn decide(
    client: &Client,
    name: &str,
    decision: Decision,
    reason: Option<&str>,
) -> Result<u8> {
    let me = ops::who_am_i(client).await?;
    let updated = ops::decide(client, &me, name, decision, reason).await?;
    let verb = match decision {
        Decision::Approved => "approved",
        Decision::Denied => "denied",
    };
    print(&format!(
        "activationrequest.kubepim.io/{} {verb}\n",
        updated.name_any()
    ))?;
    Ok(exit::OK)
}

async fn cancel(client: &Client, name: &str) -> Result<u8> {
    let current = ops::get(client, name).await?;
    match current.phase() {
        Some(Phase::Cancelled) => {
            print(&format!(
                "activationrequest.kubepim.io/{name} already cancelled\n"
            ))?;
            return Ok(exit::OK);
        }
        Some(p) if p.is_terminal() => {
            return Err(OpsError::Refused(Refusal::local(
                RefusalKind::Terminal,
                format!("{name} has already ended ({p}): there is nothing to cancel."),
            ))
            .into());
        }
        _ => {}
    }
    ops::cancel(client, name).await?;
    print(&format!("activationrequest.kubepim.io/{name} cancelled\n"))?;
    Ok(exit::OK)
}

async fn ls(client: &Client, args: LsArgs) -> Result<u8> {
    let me = ops::who_am_i(client).await?;
    let mut requests = ops::list(client).await?;
    let roles: Vec<PrivilegedRole> = Api::<PrivilegedRole>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let role_of = |ar: &ActivationRequest| roles.iter().find(|r| r.name_any() == ar.spec.role);
    requests.retain(|ar| {
        if args.to_approve {
            let pending = ar.phase().is_none_or(|p| p == Phase::Pending);
            pending && ops::can_decide(&me, ar, role_of(ar)).is_ok()
        } else {
            (args.all || ar.requester_name() == me.username)
                && (!args.active || ar.phase() == Some(Phase::Active))
        }
    });
    requests.sort_by_key(|ar| {
        ar.metadata
            .creation_timestamp
            .as_ref()
            .map(kubepim::time::from_k8s)
    });
    let text = match args.output.output {
        Some(f @ (Output::Json | Output::Yaml)) => {
            output::document(&output::list_document(&requests), f).map_err(anyhow::Error::msg)?
        }
        wide => {
            let required = roles
                .iter()
                .map(|r| (r.name_any(), required(&r.spec)))
                .collect();
            output::requests_table(&requests, &required, Utc::now(), wide == Some(Output::Wide))
        }
    };
    print(&text)?;
    Ok(exit::OK)
}

async fn show(client: &Client, args: ShowArgs) -> Result<u8> {
    let ar = ops::get(client, &args.name).await?;
    let timeline = ops::timeline(&ar, Utc::now());
    let events = ops::events_of(client, &ar).await;
    let text = match args.output.output {
        Some(f @ (Output::Json | Output::Yaml)) => {
            let doc = json!({
                "request": output::for_display(&ar),
                "timeline": timeline,
                "events": events.as_ref().ok(),
                "eventsError": events.as_ref().err(),
            });
            output::document(&doc, f).map_err(anyhow::Error::msg)?
        }
        _ => output::show_text(&ar, &timeline, &events),
    };
    print(&text)?;
    Ok(exit::OK)
}

async fn review_list(client: &Client, args: ReviewListArgs) -> Result<u8> {
    let me = ops::who_am_i(client).await?;
    let api: Api<kubepim::api::AccessReview> = Api::all(client.clone());
    let reviews = match &args.name {
        Some(name) => vec![
            api.get(name)
                .await
                .with_context(|| format!("reading access review {name}"))?,
        ],
        None => api
            .list(&ListParams::default())
            .await
            .context("listing access reviews")?
            .items
            .into_iter()
            .filter(|r| r.phase() == Some(kubepim::api::ReviewPhase::Open))
            .collect(),
    };
    let rows: Vec<(String, Vec<ops::reviews::MyItem<'_>>)> = reviews
        .iter()
        .map(|r| (r.name_any(), ops::reviews::my_items(r, &me)))
        .collect();
    match args.output.output {
        Some(Output::Json) | Some(Output::Yaml) => {
            let doc: Vec<_> = rows
                .iter()
                .flat_map(|(review, items)| {
                    items.iter().map(move |i| {
                        json!({"review": review, "item": i.item, "mine": i.mine, "latest": i.latest.map(|(d, by)| json!({"decision": d, "by": by}))})
                    })
                })
                .collect();
            let text = if args.output.output == Some(Output::Json) {
                serde_json::to_string_pretty(&doc)? + "\n"
            } else {
                serde_saphyr::to_string(&doc)?
            };
            print(&text)?;
        }
        _ => print(&output::review_items(&rows))?,
    }
    Ok(exit::OK)
}

async fn review_decide(client: &Client, args: ReviewDecideArgs) -> Result<u8> {
    let me = ops::who_am_i(client).await?;
    let decision = if args.remove {
        kubepim::api::ReviewDecision::Remove
    } else {
        kubepim::api::ReviewDecision::Keep
    };
    match ops::reviews::decide(
        client,
        &me,
        &args.name,
        &args.item,
        decision,
        args.comment.as_deref(),
    )
    .await
    {
        Ok(_) => {
            say(&format!(
                "{}: {} {} (recorded as {})",
                args.name,
                decision.as_str(),
                args.item,
                me.username
            ));
            Ok(exit::OK)
        }
        Err(OpsError::Refused(refusal)) => {
            say(&format!("refused: {refusal}"));
            Ok(exit::REFUSED)
        }
        Err(e) => Err(e.into()),
    }
}

async fn footholds(client: &Client, args: FootholdsArgs) -> Result<u8> {
    let found = ops::footholds::of(client, &args.name).await?;
    if found.is_empty() {
        print(&format!(
            "{}: no footholds recorded (see its FootholdsFound condition)\n",
            args.name
        ))?;
        return Ok(exit::OK);
    }
    if !args.remove {
        print(&output::footholds(&found))?;
        return Ok(exit::OK);
    }
    let mut failed = false;
    let mut text = String::new();
    for (f, outcome) in ops::footholds::remove(client, &found).await {
        let what = match &f.namespace {
            Some(ns) => format!("{} {ns}/{}", f.kind, f.name),
            None => format!("{} {}", f.kind, f.name),
        };
        let said = match outcome {
            ops::footholds::Removal::Removed => "removed".to_string(),
            ops::footholds::Removal::AlreadyGone => "already gone".to_string(),
            ops::footholds::Removal::Kept => format!("kept for you to judge ({})", f.why),
            ops::footholds::Removal::Replaced => {
                "kept: the object of that name is another one now".to_string()
            }
            ops::footholds::Removal::Failed(error) => {
                failed = true;
                format!("NOT removed: {error}")
            }
        };
        text.push_str(&format!("{what}: {said}\n"));
    }
    print(&text)?;
    Ok(if failed { exit::ERROR } else { exit::OK })
}

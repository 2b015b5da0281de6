//! `custodian principals`, `review` and `suspensions`.

use super::*;

pub(super) async fn principals(path: &Path, command: PrincipalsCommand) -> anyhow::Result<()> {
    use crate::domain::access::{self, Role};
    let config = load(path)?;
    let store = open_store(&config).await?;
    let now = SystemClock.now();
    match command {
        PrincipalsCommand::Add {
            name,
            role,
            expires,
            actor,
        } => {
            let role = Role::parse(&role).with_context(|| {
                format!("--role {role:?}: admin, reviewer, contractor or auditor")
            })?;
            if name.trim().is_empty() || actor.trim().is_empty() {
                bail!("--name and --actor must not be empty");
            }
            let expires_at = expires
                .as_deref()
                .map(config::parse_instant)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            if expires_at.is_some_and(|e| e <= now) {
                bail!("--expires must be in the future");
            }
            let token = access::issue_token();
            let audit = operator_audit(
                &actor,
                "principal.added",
                None,
                serde_json::json!({"role": role, "expires_at": expires_at.map(|e| e.format(&Rfc3339).unwrap_or_default())}),
            );
            store
                .add_principal(
                    &crate::store::NewPrincipal {
                        name: name.clone(),
                        role,
                        token_hash: access::token_hash(&token),
                        created_at: now,
                        expires_at,
                    },
                    &audit,
                )
                .await?;
            println!("token: {token}");
            eprintln!("The token is shown once. Give it to {name}; only its hash is stored.");
        }
        PrincipalsCommand::List => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "name\trole\tstate\texpires_at\tcreated_at")?;
            for p in store.list_principals().await? {
                let state = p.state(now);
                writeln!(
                    out,
                    "{}\t{}\t{state}\t{}\t{}",
                    p.name,
                    p.role,
                    p.expires_at
                        .map(|e| e.format(&Rfc3339))
                        .transpose()?
                        .unwrap_or_default(),
                    p.created_at.format(&Rfc3339)?
                )?;
            }
        }
        PrincipalsCommand::Revoke { name, actor } => {
            let audit = operator_audit(&actor, "principal.revoked", None, serde_json::json!({}));
            if !store.revoke_principal(&name, now, &audit).await? {
                bail!("no active principal {name:?}");
            }
            println!("revoked {name}");
        }
    }
    Ok(())
}

pub(super) async fn suspensions(path: &Path, command: SuspensionsCommand) -> anyhow::Result<()> {
    let config = load(path)?;
    let store = open_store(&config).await?;
    match command {
        SuspensionsCommand::List => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "id\tstate\ttenant\tkey_id\tcreated_by\treason")?;
            let mut all = store.list_suspensions().await?;
            all.sort_by_key(|s| (s.lifted_at.is_some(), s.id));
            for s in all {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    s.id,
                    if s.lifted_at.is_some() {
                        "lifted"
                    } else {
                        "in force"
                    },
                    s.tenant,
                    s.key_id.as_deref().unwrap_or("*"),
                    s.created_by,
                    s.reason
                )?;
            }
        }
        SuspensionsCommand::Lift { id, actor, reason } => {
            if actor.trim().is_empty() || reason.trim().is_empty() {
                bail!("--actor and --reason must not be empty");
            }
            let tenant = store
                .list_suspensions()
                .await?
                .into_iter()
                .find(|s| s.id == id)
                .map(|s| s.tenant);
            let audit = operator_audit(
                &actor,
                "suspension.lifted",
                tenant,
                serde_json::json!({ "reason": reason }),
            );
            let by = format!("operator:{actor}");
            if !store
                .lift_suspension(id, &by, SystemClock.now(), &audit)
                .await?
            {
                bail!("no suspension #{id} in force");
            }
            println!("suspension #{id} lifted; replicas apply it within consent.refresh_interval");
        }
    }
    Ok(())
}

/// The review CLI: a thin client of the admin API.
pub(super) async fn review(args: ReviewArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let base = args.url.trim_end_matches('/');
    let request = match &args.command {
        ReviewCommand::List { status, limit } => client
            .get(format!("{base}/admin/v1/review/items"))
            .query(&[("status", status.as_str()), ("limit", &limit.to_string())]),
        ReviewCommand::Show { id } => client.get(format!("{base}/admin/v1/review/items/{id}")),
        ReviewCommand::Claim => client.post(format!("{base}/admin/v1/review/claim")),
        ReviewCommand::Resolve {
            id,
            resolution,
            note,
        } => client
            .post(format!("{base}/admin/v1/review/items/{id}/resolve"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::json!({"resolution": resolution, "note": note}).to_string()),
    };
    let response = request.bearer_auth(&args.token).send().await?;
    let status = response.status();
    if status == reqwest::StatusCode::NO_CONTENT {
        println!("no open item");
        return Ok(());
    }
    let body: serde_json::Value =
        serde_json::from_slice(&response.bytes().await?).unwrap_or_default();
    if !status.is_success() {
        let message = body["error"]["message"]
            .as_str()
            .unwrap_or("request failed");
        bail!("{status}: {message}");
    }
    match args.command {
        ReviewCommand::List { .. } => {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "record_id\tseverity\tstatus\tassignee\ttenant\trules\tcreated_at"
            )?;
            for item in body["data"].as_array().into_iter().flatten() {
                let rules: Vec<&str> = item["reasons"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r["rule"].as_str())
                    .collect();
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    item["record_id"].as_str().unwrap_or(""),
                    item["severity"].as_str().unwrap_or(""),
                    item["status"].as_str().unwrap_or(""),
                    item["assignee"].as_str().unwrap_or("-"),
                    item["tenant"].as_str().unwrap_or(""),
                    rules.join(","),
                    item["created_at"].as_str().unwrap_or("")
                )?;
            }
        }
        _ => println!("{}", serde_json::to_string_pretty(&body)?),
    }
    Ok(())
}

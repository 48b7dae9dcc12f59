//! `spike policy create|apply|list|get|delete`.
//!
//! Policies are validated here with the same rules Nexus applies (the `policies` crate), so
//! a typo fails before any call; Nexus still decides.

use nexus_api::model::{ListPoliciesRequest, PolicyResponse, PutPolicyRequest};
use nexus_api::{ClientError, ErrorCode};
use policies::{Permission, Policy};
use serde::Serialize;

use crate::cli::{ApplyArgs, GlobalArgs, PolicyCommand, PolicyFields, PolicyListArgs};
use crate::context::Session;
use crate::error::{Operation, PilotError};
use crate::input::{confirm_at_terminal, read_file};
use crate::output::{Format, Output, structured, time};

/// Runs a `spike policy` command.
pub async fn run(command: PolicyCommand, global: &GlobalArgs) -> Result<Output, PilotError> {
    match command {
        PolicyCommand::Create(fields) => create(fields, global).await,
        PolicyCommand::Apply(args) => apply(args, global).await,
        PolicyCommand::List(args) => list(args, global).await,
        PolicyCommand::Get(name) => get(name.name(), global).await,
        PolicyCommand::Delete(args) => {
            let name = args.name.name();
            if !args.yes {
                let question =
                    format!("Delete policy `{name}`? Workloads lose what it grants at once.");
                confirm_at_terminal(&question)?;
            }
            delete(name, global).await
        }
    }
}

async fn create(fields: PolicyFields, global: &GlobalArgs) -> Result<Output, PilotError> {
    let request = from_flags(
        &fields.name,
        &fields.spiffeid_pattern,
        &fields.path_pattern,
        &fields.permissions,
    )?;
    let session = Session::connect(global).await?;
    let name = request.name.as_str();
    match session.client().get_policy(name).await {
        Ok(_) => {
            return Err(PilotError::Refused(format!(
                "Policy '{name}' already exists; use `spike policy apply` to replace it."
            )));
        }
        Err(ClientError::Api {
            code: ErrorCode::NotFound,
            ..
        }) => {}
        Err(e) => return Err(session.fail(Operation::ReadPolicy { name })(e)),
    }
    write(&session, &request, Written::Created, global.format).await
}

async fn apply(args: ApplyArgs, global: &GlobalArgs) -> Result<Output, PilotError> {
    let request = match &args.file {
        Some(path) => {
            let text = read_file(path, &mut std::io::stdin().lock())?;
            to_request(&Policy::from_yaml(&text)?)
        }
        None => from_flags(
            args.name.as_deref().unwrap_or_default(),
            args.spiffeid_pattern.as_deref().unwrap_or_default(),
            args.path_pattern.as_deref().unwrap_or_default(),
            &args.permissions,
        )?,
    };
    let session = Session::connect(global).await?;
    write(&session, &request, Written::Applied, global.format).await
}

/// Writes the policy `request` through `session` and says so, as `what`.
async fn write(
    session: &Session,
    request: &PutPolicyRequest,
    what: Written,
    format: Format,
) -> Result<Output, PilotError> {
    let name = request.name.as_str();
    session
        .client()
        .put_policy(request)
        .await
        .map_err(session.fail(Operation::WritePolicy { name }))?;
    Ok(Output::ok(render_written(what, name, format)))
}

async fn list(args: PolicyListArgs, global: &GlobalArgs) -> Result<Output, PilotError> {
    let filter = ListPoliciesRequest {
        spiffe_id_pattern: args.spiffeid_pattern,
        path_pattern: args.path_pattern,
    };
    let session = Session::connect(global).await?;
    let policies = session
        .client()
        .list_policies(&filter)
        .await
        .map_err(session.fail(Operation::ListPolicies))?;
    Ok(Output::ok(render_list(&policies, global.format)))
}

async fn get(name: &str, global: &GlobalArgs) -> Result<Output, PilotError> {
    let session = Session::connect(global).await?;
    let policy = session
        .client()
        .get_policy(name)
        .await
        .map_err(session.fail(Operation::ReadPolicy { name }))?;
    Ok(Output::ok(render_policy(&policy, global.format)))
}

async fn delete(name: &str, global: &GlobalArgs) -> Result<Output, PilotError> {
    let session = Session::connect(global).await?;
    session
        .client()
        .delete_policy(name)
        .await
        .map_err(session.fail(Operation::WritePolicy { name }))?;
    Ok(Output::ok(render_written(
        Written::Deleted,
        name,
        global.format,
    )))
}

/// A validated policy from flags; `permissions` are the comma-separated items.
pub fn from_flags(
    name: &str,
    spiffe_id_pattern: &str,
    path_pattern: &str,
    permissions: &[String],
) -> Result<PutPolicyRequest, PilotError> {
    let permissions = permissions
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(str::parse::<Permission>)
        .collect::<Result<Vec<_>, _>>()?;
    let policy = Policy::new(name, spiffe_id_pattern, path_pattern, permissions);
    policy.validate()?;
    Ok(to_request(&policy))
}

fn to_request(policy: &Policy) -> PutPolicyRequest {
    PutPolicyRequest {
        name: policy.name.clone(),
        spiffe_id_pattern: policy.spiffe_id_pattern.clone(),
        path_pattern: policy.path_pattern.clone(),
        permissions: policy
            .permissions
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
    }
}

/// What happened to a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// `create`.
    Created,
    /// `apply`.
    Applied,
    /// `delete`.
    Deleted,
}

/// SPIKE's messages, or `{action, name}` for scripts.
pub fn render_written(what: Written, name: &str, format: Format) -> String {
    #[derive(Serialize)]
    struct Done<'a> {
        action: &'a str,
        name: &'a str,
    }
    let (action, human) = match what {
        Written::Created => ("create", "Policy created successfully.".to_owned()),
        Written::Applied => ("apply", format!("Policy '{name}' applied successfully.")),
        Written::Deleted => ("delete", "Policy deleted successfully.".to_owned()),
    };
    structured(&Done { action, name }, format).unwrap_or(human + "\n")
}

/// A policy for json and yaml: the API's fields with SPIKE's policy spelling
/// (`spiffeidPattern`), without the wire's second spelling.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyView<'a> {
    id: &'a str,
    name: &'a str,
    #[serde(rename = "spiffeidPattern")]
    spiffe_id_pattern: &'a str,
    path_pattern: &'a str,
    permissions: &'a [String],
    #[serde(with = "time::serde::rfc3339")]
    created_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: time::OffsetDateTime,
}

impl<'a> From<&'a PolicyResponse> for PolicyView<'a> {
    fn from(p: &'a PolicyResponse) -> Self {
        PolicyView {
            id: &p.id,
            name: &p.name,
            spiffe_id_pattern: &p.spiffe_id_pattern,
            path_pattern: &p.path_pattern,
            permissions: &p.permissions,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// One policy: `Label: value` lines, or its fields.
pub fn render_policy(policy: &PolicyResponse, format: Format) -> String {
    structured(&PolicyView::from(policy), format).unwrap_or_else(|| block(policy))
}

/// Policies as `Name: ...` blocks or `No policies found.`, or a list of their fields.
pub fn render_list(policies: &[PolicyResponse], format: Format) -> String {
    let views: Vec<PolicyView<'_>> = policies.iter().map(PolicyView::from).collect();
    structured(&views, format).unwrap_or_else(|| {
        if policies.is_empty() {
            "No policies found.\n".to_owned()
        } else {
            policies.iter().map(block).collect::<Vec<_>>().join("\n")
        }
    })
}

fn block(policy: &PolicyResponse) -> String {
    format!(
        "Name: {}\nSPIFFE ID pattern: {}\nPath pattern: {}\nPermissions: {}\nCreated: {}\nUpdated: {}\n",
        policy.name,
        policy.spiffe_id_pattern,
        policy.path_pattern,
        policy.permissions.join(", "),
        time(policy.created_at),
        time(policy.updated_at),
    )
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;

    fn sample(name: &str) -> PolicyResponse {
        PolicyResponse {
            id: name.into(),
            name: name.into(),
            spiffe_id_pattern: r"^spiffe://example\.org/app/billing$".into(),
            path_pattern: "^apps/billing/.*$".into(),
            permissions: vec!["read".into(), "list".into()],
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn parse(text: &str, format: Format) -> serde_json::Value {
        match format {
            Format::Json => serde_json::from_str(text).ok(),
            _ => serde_norway::from_str(text).ok(),
        }
        .unwrap_or_else(|| panic!("not {format:?}: {text}"))
    }

    #[test]
    fn flags_are_validated_before_any_call() {
        let ok = from_flags("billing", "^a$", "^b/.*$", &["read".into(), " list".into()]);
        let ok = ok.ok();
        assert_eq!(
            ok.as_ref().map(|r| r.permissions.clone()),
            Some(vec!["read".to_owned(), "list".to_owned()])
        );
        let typo = from_flags("billing", "^a$", "^b$", &["raed".into()]);
        let text = typo.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("unknown permission `raed`"), "{text}");
        let bad_regex = from_flags("billing", "(", "^b$", &["read".into()]);
        let text = bad_regex.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.starts_with("Invalid policy: spiffeidPattern"),
            "{text}"
        );
        let bad_name = from_flags("a/b", "^a$", "^b$", &["read".into()]);
        assert!(bad_name.is_err());
        let none = from_flags("n", "^a$", "^b$", &[]);
        assert!(none.is_err());
    }

    #[test]
    fn written_messages() {
        assert_eq!(
            render_written(Written::Created, "p", Format::Human),
            "Policy created successfully.\n"
        );
        assert_eq!(
            render_written(Written::Applied, "p", Format::Human),
            "Policy 'p' applied successfully.\n"
        );
        assert_eq!(
            render_written(Written::Deleted, "p", Format::Human),
            "Policy deleted successfully.\n"
        );
        for format in [Format::Json, Format::Yaml] {
            let value = parse(&render_written(Written::Applied, "p", format), format);
            assert_eq!(value, serde_json::json!({"action": "apply", "name": "p"}));
        }
    }

    #[test]
    fn policy_output() {
        let text = render_policy(&sample("billing"), Format::Human);
        assert_eq!(
            text,
            "Name: billing\nSPIFFE ID pattern: ^spiffe://example\\.org/app/billing$\nPath pattern: ^apps/billing/.*$\nPermissions: read, list\nCreated: 1970-01-01T00:00:00Z\nUpdated: 1970-01-01T00:00:00Z\n"
        );
        for format in [Format::Json, Format::Yaml] {
            let value = parse(&render_policy(&sample("billing"), format), format);
            assert_eq!(value["name"], "billing");
            assert_eq!(
                value["spiffeidPattern"],
                r"^spiffe://example\.org/app/billing$"
            );
            assert_eq!(value["pathPattern"], "^apps/billing/.*$");
            assert_eq!(value["permissions"], serde_json::json!(["read", "list"]));
            assert_eq!(value["createdAt"], "1970-01-01T00:00:00Z");
            assert!(value.get("spiffiedPattern").is_none(), "{value}");
        }
    }

    #[test]
    fn list_output() {
        let policies = [sample("a"), sample("b")];
        let text = render_list(&policies, Format::Human);
        assert!(text.starts_with("Name: a\n"), "{text}");
        assert!(text.contains("\n\nName: b\n"), "{text}");
        assert_eq!(render_list(&[], Format::Human), "No policies found.\n");
        for format in [Format::Json, Format::Yaml] {
            let value = parse(&render_list(&policies, format), format);
            assert_eq!(value[0]["name"], "a");
            assert_eq!(value[1]["id"], "b");
            assert_eq!(
                parse(&render_list(&[], format), format),
                serde_json::json!([])
            );
        }
    }
}

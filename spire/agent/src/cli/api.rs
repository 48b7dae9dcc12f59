//! `spire-agent api fetch|validate|watch`: the Workload API from the command line, with
//! SPIRE's flags and output. The JWT profile is here; the X.509 one in [`super::x509`].
//! `-output json` prints the Workload API's responses as SPIRE's CLI does (protobuf JSON
//! field names, bytes in base64; `fetch jwt` prints `[JWTSVIDResponse, JWTBundlesResponse]`).

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::Subcommand;
use serde_json::Value;
use spiffe::SpiffeId;
use spire_proto::workload as wl;
use spire_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::{Output, print_json};
use crate::config::DEFAULT_SOCKET_PATH;

/// Where the Workload API is, and how results are printed.
#[derive(Debug, Clone, clap::Args)]
pub struct Socket {
    /// Path of the Workload API socket.
    #[arg(long = "socketPath", env = "SPIRE_AGENT_SOCKET", default_value = DEFAULT_SOCKET_PATH)]
    pub socket_path: PathBuf,
    /// Output format: pretty or json.
    #[arg(long = "output", default_value = "pretty")]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Fetches SVIDs from the Workload API.
    #[command(subcommand)]
    Fetch(FetchCommand),
    /// Validates SVIDs through the Workload API.
    #[command(subcommand)]
    Validate(ValidateCommand),
    /// Prints every X509-SVID update as the agent pushes it, until interrupted.
    Watch {
        #[command(flatten)]
        socket: Socket,
    },
}

#[derive(Debug, Subcommand)]
pub enum FetchCommand {
    /// Fetches this workload's X509-SVIDs and bundles, prints them and optionally writes them.
    X509 {
        /// Write svid.N.pem, svid.N.key, bundle.N.pem and federated_bundle.N.M.pem here.
        #[arg(long = "write")]
        write: Option<PathBuf>,
        /// Print nothing (with -write: only write the files).
        #[arg(long = "silent")]
        silent: bool,
        /// How long to wait for the SVIDs, e.g. `1s`, `500ms`.
        #[arg(long = "timeout", default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        #[command(flatten)]
        socket: Socket,
    },
    /// Fetches JWT-SVIDs for an audience and the JWT bundles, and prints them.
    Jwt {
        /// Audience of the token; comma-separated or repeated.
        #[arg(long = "audience", required = true, value_delimiter = ',')]
        audience: Vec<String>,
        /// Only the token of this SPIFFE ID.
        #[arg(long = "spiffeID", value_parser = spire_proto::flags::canonical_spiffe_id)]
        spiffe_id: Option<SpiffeId>,
        #[command(flatten)]
        socket: Socket,
    },
}

#[derive(Debug, Subcommand)]
pub enum ValidateCommand {
    /// Asks the agent to validate a JWT-SVID for an audience.
    Jwt {
        /// The audience the token must be for.
        #[arg(long = "audience")]
        audience: String,
        /// The token.
        #[arg(long = "svid")]
        svid: String,
        #[command(flatten)]
        socket: Socket,
    },
}

pub(super) type Client = SpiffeWorkloadApiClient<
    InterceptedService<
        Channel,
        fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>,
    >,
>;

/// Adds the Workload API security header (`workload.spiffe.io: true`).
fn security_header(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    request.metadata_mut().insert(
        "workload.spiffe.io",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    Ok(request)
}

pub(super) async fn client(socket: &Socket) -> anyhow::Result<Client> {
    let channel = spire_proto::uds::connect(&socket.socket_path)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the agent at {}: {e}",
                socket.socket_path.display()
            )
        })?;
    let header: fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> =
        security_header;
    Ok(SpiffeWorkloadApiClient::with_interceptor(channel, header))
}

pub async fn execute(command: ApiCommand) -> anyhow::Result<()> {
    match command {
        ApiCommand::Fetch(FetchCommand::Jwt {
            audience,
            spiffe_id,
            socket,
        }) => fetch_jwt(&socket, audience, spiffe_id).await,
        ApiCommand::Validate(ValidateCommand::Jwt {
            audience,
            svid,
            socket,
        }) => validate_jwt(&socket, audience, svid).await,
        ApiCommand::Fetch(FetchCommand::X509 {
            write,
            silent,
            timeout,
            socket,
        }) => super::x509::fetch(&socket, write.as_deref(), silent, timeout).await,
        ApiCommand::Watch { socket } => super::x509::watch(&socket).await,
    }
}

async fn fetch_jwt(
    socket: &Socket,
    audience: Vec<String>,
    spiffe_id: Option<SpiffeId>,
) -> anyhow::Result<()> {
    let mut client = client(socket).await?;
    let svids = client
        .fetch_jwtsvid(wl::JwtsvidRequest {
            audience,
            spiffe_id: spiffe_id.map(|id| id.to_string()).unwrap_or_default(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("fetching JWT-SVIDs failed: {}", s.message()))?
        .into_inner()
        .svids;
    let bundles = client
        .fetch_jwt_bundles(wl::JwtBundlesRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("fetching JWT bundles failed: {}", s.message()))?
        .into_inner()
        .message()
        .await
        .map_err(|s| anyhow::anyhow!("fetching JWT bundles failed: {}", s.message()))?
        .ok_or_else(|| anyhow::anyhow!("the agent closed the JWT bundle stream"))?
        .bundles;
    let mut bundles: Vec<_> = bundles.into_iter().collect();
    bundles.sort();
    if socket.output == Output::Json {
        print_json(&serde_json::json!([
            { "svids": svids.iter().map(|s| serde_json::json!({
                "spiffe_id": s.spiffe_id, "svid": s.svid, "hint": s.hint,
            })).collect::<Vec<_>>() },
            { "bundles": bundles.iter().map(|(td, jwks)| (td.clone(), Value::from(BASE64.encode(jwks))))
                .collect::<serde_json::Map<_, _>>() },
        ]));
        return Ok(());
    }
    for svid in svids {
        println!("token({}):\n\t{}", svid.spiffe_id, svid.svid);
        if !svid.hint.is_empty() {
            println!("hint({}):\n\t{}", svid.spiffe_id, svid.hint);
        }
    }
    for (trust_domain, jwks) in bundles {
        println!(
            "bundle({trust_domain}):\n\t{}",
            String::from_utf8_lossy(&jwks)
        );
    }
    Ok(())
}

async fn validate_jwt(socket: &Socket, audience: String, svid: String) -> anyhow::Result<()> {
    let response = client(socket)
        .await?
        .validate_jwtsvid(wl::ValidateJwtsvidRequest { audience, svid })
        .await
        .map_err(|s| anyhow::anyhow!("SVID is not valid: {}", s.message()))?
        .into_inner();
    let claims = response.claims.map(struct_to_json).unwrap_or(Value::Null);
    if socket.output == Output::Json {
        print_json(&serde_json::json!({ "spiffe_id": response.spiffe_id, "claims": claims }));
        return Ok(());
    }
    println!("SVID is valid.");
    println!("SPIFFE ID : {}", response.spiffe_id);
    println!("Claims    : {claims}");
    Ok(())
}

fn struct_to_json(s: prost_types::Struct) -> Value {
    Value::Object(
        s.fields
            .into_iter()
            .map(|(k, v)| (k, value_to_json(v)))
            .collect(),
    )
}

fn value_to_json(value: prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        // Claims such as exp and iat are whole seconds; print them as integers, as SPIRE does.
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => Value::from(n as i64),
        Some(Kind::NumberValue(n)) => Value::from(n),
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::ListValue(list)) => {
            Value::Array(list.values.into_iter().map(value_to_json).collect())
        }
        Some(Kind::StructValue(s)) => struct_to_json(s),
    }
}

//! `spike cipher encrypt|decrypt`: Nexus's encryption as a service. Stream mode moves raw
//! bytes (stdin or `--file` in, stdout or `--out` out); JSON mode, chosen by giving the values
//! as base64 flags, prints or takes SPIKE's `{version, nonce, ciphertext}`.

use std::io::Read;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use nexus_api::model::{Ciphertext, EncryptRequest};
use zeroize::Zeroizing;

use crate::cli::{CipherCommand, DecryptArgs, EncryptArgs, GlobalArgs};
use crate::context::Session;
use crate::error::{Operation, PilotError};
use crate::output::{Output, structured};

/// Runs one `cipher` command.
pub async fn run(command: CipherCommand, global: &GlobalArgs) -> Result<Output, PilotError> {
    match command {
        CipherCommand::Encrypt(args) => encrypt(args, global).await,
        CipherCommand::Decrypt(args) => decrypt(args, global).await,
    }
}

async fn encrypt(args: EncryptArgs, global: &GlobalArgs) -> Result<Output, PilotError> {
    let session = Session::connect(global).await?;
    let client = session.client();
    if let Some(plaintext) = &args.plaintext {
        let request = EncryptRequest {
            plaintext: Zeroizing::new(base64("--plaintext", plaintext)?),
            algorithm: args.algorithm,
        };
        let sealed = client
            .encrypt_json(&request)
            .await
            .map_err(session.fail(Operation::Cipher))?;
        let json = serde_json::json!({
            "version": sealed.version,
            "nonce": STANDARD.encode(&sealed.nonce),
            "ciphertext": STANDARD.encode(&sealed.ciphertext),
        });
        // Human format is the one-line JSON a script or SPIKE's `decrypt` flags take back.
        let text = structured(&json, global.format).unwrap_or_else(|| format!("{json}\n"));
        return finish(text.into_bytes(), args.out.as_deref());
    }
    let plaintext = read_input(args.file.as_deref())?;
    let sealed = client
        .encrypt(&plaintext)
        .await
        .map_err(session.fail(Operation::Cipher))?;
    finish(sealed, args.out.as_deref())
}

async fn decrypt(args: DecryptArgs, global: &GlobalArgs) -> Result<Output, PilotError> {
    let session = Session::connect(global).await?;
    let client = session.client();
    if let (Some(nonce), Some(ciphertext)) = (&args.nonce, &args.ciphertext) {
        let request = Ciphertext {
            version: args.version,
            nonce: base64("--nonce", nonce)?,
            ciphertext: base64("--ciphertext", ciphertext)?,
            algorithm: args.algorithm,
        };
        let opened = client
            .decrypt_json(&request)
            .await
            .map_err(session.fail(Operation::Cipher))?;
        return finish(opened.plaintext.to_vec(), args.out.as_deref());
    }
    let sealed = read_input(args.file.as_deref())?;
    let plaintext = client
        .decrypt(&sealed)
        .await
        .map_err(session.fail(Operation::Cipher))?;
    finish(plaintext.to_vec(), args.out.as_deref())
}

fn base64(flag: &str, text: &str) -> Result<Vec<u8>, PilotError> {
    STANDARD
        .decode(text.trim())
        .map_err(|_| PilotError::Refused(format!("{flag} is not valid standard base64")))
}

/// The bytes of `file`, or of stdin.
fn read_input(file: Option<&Path>) -> Result<Zeroizing<Vec<u8>>, PilotError> {
    let mut bytes = Zeroizing::new(Vec::new());
    let read = match file {
        Some(path) => std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)),
        None => std::io::stdin().read_to_end(&mut bytes),
    };
    read.map_err(|e| {
        let from = file.map_or_else(|| "stdin".to_owned(), |p| p.display().to_string());
        PilotError::Local(format!("cannot read {from}: {e}"))
    })?;
    Ok(bytes)
}

/// `bytes` to `out` (0600, atomically) or to stdout.
fn finish(bytes: Vec<u8>, out: Option<&Path>) -> Result<Output, PilotError> {
    match out {
        Some(path) => {
            common_process::files::write_atomic(path, &bytes, common_process::files::PRIVATE)
                .map_err(|e| PilotError::Local(format!("cannot write {}: {e}", path.display())))?;
            Ok(Output::ok(String::new()))
        }
        None => Ok(Output {
            stdout: bytes,
            code: 0,
        }),
    }
}

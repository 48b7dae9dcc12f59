//! A SoftHSM2 token of the test's own: a token directory and `softhsm2.conf` in a temporary
//! directory (found by the library through `SOFTHSM2_CONF`), initialised with
//! `softhsm2-util`. SoftHSM2 is a real PKCS#11 implementation; a test that needs it and cannot
//! find it fails, saying how to install it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian and other distributions put the module.
const MODULE_PATHS: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// The user PIN of every test token.
pub const USER_PIN: &str = "4711-spike";
const SO_PIN: &str = "so-4711-spike";

/// An initialised token in a directory of its own.
pub struct SoftHsm {
    /// The PKCS#11 module.
    pub module: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// `SOFTHSM2_CONF` for every process that uses the token.
    pub conf: PathBuf,
}

impl SoftHsm {
    /// Creates a token labelled `label` under `dir`. Panics, with the install command, when
    /// SoftHSM2 is not installed.
    pub fn create(dir: &Path, label: &str) -> SoftHsm {
        let module = MODULE_PATHS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| {
                panic!(
                    "SoftHSM2 is not installed (no libsofthsm2.so in {MODULE_PATHS:?}); \
                     install it with `apt-get install softhsm2` (.ci/run does)"
                )
            });
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).expect("token directory");
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .expect("softhsm2.conf");
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", label])
            .args(["--pin", USER_PIN, "--so-pin", SO_PIN])
            .output()
            .unwrap_or_else(|e| {
                panic!("running softhsm2-util ({e}); install it with `apt-get install softhsm2`")
            });
        assert!(
            out.status.success(),
            "softhsm2-util --init-token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SoftHsm {
            module,
            token_label: label.to_owned(),
            conf,
        }
    }

    /// The `[server.key_manager.pkcs11]` table for this token, the PIN read from `$pin_env`.
    pub fn server_config(&self, pin_env: &str) -> String {
        format!(
            "[server.key_manager.pkcs11]\nmodule_path = {:?}\ntoken_label = {:?}\npin_env = {:?}\n",
            self.module.display().to_string(),
            self.token_label,
            pin_env
        )
    }

    /// Generates a P-256 key pair labelled `label` with OpenSC's `pkcs11-tool`, as a stale key
    /// left by a crash would be.
    pub fn generate_stray_key(&self, label: &str) {
        let out = self
            .pkcs11_tool()
            .args([
                "--keypairgen",
                "--key-type",
                "EC:prime256v1",
                "--id",
                "5a5a",
            ])
            .args(["--label", label])
            .output()
            .expect("running pkcs11-tool");
        assert!(
            out.status.success(),
            "pkcs11-tool --keypairgen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pkcs11_tool(&self) -> Command {
        let mut cmd = Command::new("pkcs11-tool");
        cmd.env("SOFTHSM2_CONF", &self.conf)
            .arg("--module")
            .arg(&self.module)
            .args([
                "--token-label",
                &self.token_label,
                "--login",
                "--pin",
                USER_PIN,
            ]);
        cmd
    }

    /// The objects in the token as OpenSC's `pkcs11-tool --list-objects` prints them (an
    /// independent PKCS#11 client), logged in as the user.
    pub fn list_objects(&self) -> String {
        let out = Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", &self.conf)
            .arg("--module")
            .arg(&self.module)
            .args([
                "--token-label",
                &self.token_label,
                "--login",
                "--pin",
                USER_PIN,
            ])
            .arg("--list-objects")
            .output()
            .unwrap_or_else(|e| {
                panic!("running pkcs11-tool ({e}); install it with `apt-get install opensc`")
            });
        assert!(
            out.status.success(),
            "pkcs11-tool --list-objects failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

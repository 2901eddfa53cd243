//! A throwaway certificate authority and server certificate for 127.0.0.1, made with the
//! `openssl` command line.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA and a server certificate it signed.
pub struct TestPki {
    /// The CA certificate, PEM.
    pub ca_pem: PathBuf,
    /// The server certificate, PEM.
    pub cert: PathBuf,
    /// The server key, PEM.
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl {args:?} failed");
}

/// Makes a CA named `name` and a certificate for 127.0.0.1 and localhost in `dir`.
pub fn make(dir: &Path, name: &str) -> TestPki {
    std::fs::create_dir_all(dir).expect("pki dir");
    let file = |suffix: &str| format!("{name}-{suffix}");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
            "-keyout",
            &file("ca.key"),
            "-out",
            &file("ca.pem"),
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &file("server.key"),
            "-out",
            &file("server.csr"),
        ],
    );
    std::fs::write(
        dir.join(file("ext.cnf")),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .expect("extensions");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &file("server.csr"),
            "-CA",
            &file("ca.pem"),
            "-CAkey",
            &file("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &file("ext.cnf"),
            "-out",
            &file("server.pem"),
        ],
    );
    TestPki {
        ca_pem: dir.join(file("ca.pem")),
        cert: dir.join(file("server.pem")),
        key: dir.join(file("server.key")),
    }
}

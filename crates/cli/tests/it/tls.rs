//! `--tls-cert`/`--tls-key`: every TCP listener speaks TLS. The real
//! OpenTelemetry Python SDK exports over OTLP/gRPC and OTLP/HTTP to a
//! server whose certificate a private CA signed, trusting that CA; Python's
//! standard library and the CLI read the traces back over HTTPS; the
//! sign-in cookie is `Secure`; plain HTTP and clients that do not trust the
//! CA get nowhere.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::{add_key, chaintrace, last_json_line, python_script, Server};

/// A private CA and a server certificate it signed for 127.0.0.1 and
/// localhost, made by the `openssl` command (which .ci/run installs), as a
/// team with its own CA would have: (server cert, server key, CA cert).
fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("run openssl (install it: apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=chaintrace test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "key.pem",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    )
}

fn python() -> String {
    crate::harness::python("CHAINTRACE_TEST_PYTHON")
}

/// One HTTPS request from Python trusting `cafile`: its JSON report.
async fn https(method: &str, url: &str, cafile: &Path, key: &str, form: Option<&str>) -> Value {
    let mut cmd = Command::new(python());
    cmd.arg(python_script("https_request.py"))
        .args([method, url])
        .arg(cafile)
        .arg(key);
    if let Some(form) = form {
        cmd.arg(form);
    }
    last_json_line(&format!("{method} {url}"), cmd).await
}

#[tokio::test]
async fn the_python_sdk_exports_over_tls_and_plain_http_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (server_cert, key, ca) = private_ca(dir.path());
    let keys = dir.path().join("keys.toml");
    let keys_arg = keys.to_str().unwrap();
    let ingest = &add_key(&keys, "collector", "ingest", "default");
    let read = &add_key(&keys, "reader", "read", "default");
    let flags = [
        "--tls-cert",
        server_cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--keys",
        keys_arg,
    ];
    let server = Server::start(&dir.path().join("data"), &flags);
    assert!(
        server.api.starts_with("https://") && server.otlp_http.starts_with("https://"),
        "{}",
        server.api
    );

    for (protocol, endpoint) in [
        ("grpc", format!("https://{}", server.grpc)),
        ("http", server.otlp_http.clone()),
    ] {
        let mut cmd = Command::new(python());
        cmd.arg(python_script("keyed_export.py"))
            .args([protocol, &endpoint, "over-tls"])
            .env(
                "OTEL_EXPORTER_OTLP_HEADERS",
                format!("authorization=Bearer%20{ingest}"),
            )
            .env("OTEL_EXPORTER_OTLP_CERTIFICATE", &ca)
            // requests lets these override the exporter's certificate
            // (its merge_environment_settings), so a machine that sets them
            // would test its own bundle instead of ours.
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE");
        let result = last_json_line(protocol, cmd).await;
        assert_eq!(result["result"], "SUCCESS", "{protocol} over TLS");
        let trace = result["trace_id"].as_str().unwrap();
        let answer = https(
            "GET",
            &format!("{}/api/v1/traces/{trace}", server.api),
            &ca,
            read,
            None,
        )
        .await;
        assert_eq!(answer["status"], 200, "{answer}");
        assert!(
            answer["body"].as_str().unwrap().contains("over-tls"),
            "{answer}"
        );
    }

    // The CLI reads over https, trusting the certificate SSL_CERT_FILE names.
    let out = Command::new(crate::harness::bin())
        .args([
            "traces",
            "--server",
            &server.api,
            "--key",
            read,
            "--since",
            "1h",
        ])
        .env("SSL_CERT_FILE", &ca)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        listed.contains("keyed-grpc") && listed.contains("keyed-http"),
        "{listed}"
    );

    // The sign-in cookie is Secure over TLS.
    let form = format!("key={read}&next=/");
    let signed = https(
        "POST",
        &format!("{}/login", server.api),
        &ca,
        "",
        Some(&form),
    )
    .await;
    assert_eq!(signed["status"], 303, "{signed}");
    let cookie = signed["headers"]["set-cookie"].as_str().unwrap_or_default();
    assert!(
        cookie.starts_with("__Host-chaintrace_session=")
            && cookie.contains("; Secure")
            && cookie.contains("HttpOnly"),
        "{cookie}"
    );

    // Plain HTTP to a TLS port gets no answer; a client that does not
    // trust the certificate does not connect.
    let plain = server.api.replacen("https://", "http://", 1);
    let refused = reqwest::Client::new()
        .get(format!("{plain}/api/v1/health"))
        .timeout(std::time::Duration::from_secs(20))
        .send()
        .await;
    assert!(refused.is_err(), "plain HTTP was answered: {refused:?}");
    let mut cmd = Command::new(python());
    cmd.arg(python_script("https_request.py"))
        .args(["GET", &format!("{}/api/v1/health", server.api)])
        .arg(dir.path().join("missing-ca.pem"));
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        !out.status.success(),
        "a client without the certificate connected"
    );

    // A key file that does not match the certificate is refused at start.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (other_cert, _, _) = private_ca(&other);
    let data = dir.path().join("d2");
    let mut args: Vec<&str> = crate::harness::SERVE_ON_FREE_PORTS.to_vec();
    args.extend(["--data-dir", data.to_str().unwrap()]);
    args.extend([
        "--tls-cert",
        other_cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let (ok, _, err) = chaintrace(&args);
    assert!(!ok && err.contains("do not make a usable pair"), "{err}");
}

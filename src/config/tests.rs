use super::*;

const MINIMAL: &str = r#"
[profiles.api]
training_cutover = "2023-03-01T00:00:00Z"

[[routes]]
prefix = "/v1/"
upstream = "http://127.0.0.1:1/v1"
profile = "api"

[[tenants]]
id = "acme"
managed_keys = ["sha256:0000000000000000000000000000000000000000000000000000000000000000"]
"#;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(Path::new("test.toml"), text, Vec::new())
}

#[test]
fn encryption_keys_are_checked_where_they_are_given() {
    const KEK: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    let load = |section: &str| {
        let env = vec![
            ("KEK".to_owned(), KEK.to_owned()),
            ("SHORT".to_owned(), "abcd".to_owned()),
        ];
        let text = format!("{MINIMAL}\n[encryption]\nenabled = true\n{section}\n");
        Config::from_toml(Path::new("test.toml"), &text, env)
    };
    let ok = load("kek = { env = \"KEK\" }\nprevious_keks = [{ env = \"KEK\" }]").unwrap();
    let encryption = ok.encryption.unwrap();
    assert_eq!(encryption.previous_keks.len(), 1);
    assert_eq!(encryption.refresh_interval, Duration::from_secs(30));
    for (section, key) in [
        ("kek = { env = \"SHORT\" }", "encryption.kek"),
        (
            "kek = { env = \"KEK\" }\nprevious_keks = [{ env = \"SHORT\" }]",
            "encryption.previous_keks",
        ),
        (
            "kek = { env = \"KEK\" }\nkey_store_url = \"mysql://x\"",
            "encryption.key_store_url",
        ),
        (
            "kek = { env = \"KEK\" }\nrefresh_interval = \"0s\"",
            "encryption.refresh_interval",
        ),
        ("key_dir = \"k\"", "encryption.kek"),
    ] {
        let err = load(section).unwrap_err().to_string();
        assert!(err.contains(key), "{section}: {err}");
        assert!(!err.contains("abcd"), "{err}");
    }
}

fn load_err(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("config should have been rejected"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn minimal_config_gets_defaults() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(c.database.url, "sqlite://custodian.db");
    assert_eq!(c.routes[0].upstream.as_str(), "http://127.0.0.1:1/v1/");
    let policy = &c.tenants[0].policies[0];
    assert_eq!(policy.retention.content, Duration::from_secs(30 * 86_400));
    assert_eq!(policy.retention.metadata, Duration::from_secs(365 * 86_400));
    assert!(c.policy_version.starts_with("pv_"));
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let text = format!("{MINIMAL}\n[server]\nlisten = \"127.0.0.1:1\"\nlisten_port = 3\n");
    let err = load_err(&text);
    assert!(err.contains("test.toml"), "{err}");
    assert!(err.contains("line 16"), "{err}");
    assert!(err.contains("listen_port"), "{err}");
}

#[test]
fn bad_duration_names_the_line() {
    let text = MINIMAL.replace(
        "training_cutover = \"2023-03-01T00:00:00Z\"",
        "content_retention = \"thirty days\"",
    );
    let err = load_err(&text);
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("invalid duration"), "{err}");
}

#[test]
fn unknown_profile_reference_names_line_and_key() {
    let err = load_err(&MINIMAL.replace("profile = \"api\"", "profile = \"apx\""));
    assert!(err.starts_with("test.toml:8: routes[0].profile"), "{err}");
}

#[test]
fn tenant_cannot_lengthen_retention() {
    let text = format!("{MINIMAL}content_retention = \"31d\"\n");
    let err = load_err(&text);
    assert!(err.contains("tenants[0].content_retention"), "{err}");
    assert!(err.contains("may only shorten"), "{err}");
}

#[test]
fn malformed_key_hash_is_rejected() {
    let err = load_err(&MINIMAL.replace("sha256:0000", "sha256:zz00"));
    assert!(err.contains("tenants[0].managed_keys"), "{err}");
}

#[test]
fn env_overrides_apply_with_types() {
    let env = vec![
        (
            "CUSTODIAN__DATABASE__URL".to_owned(),
            "postgres://x/y".to_owned(),
        ),
        (
            "CUSTODIAN__DATABASE__MAX_CONNECTIONS".to_owned(),
            "3".to_owned(),
        ),
        (
            "CUSTODIAN__SERVER__SHUTDOWN_DRAIN".to_owned(),
            "5s".to_owned(),
        ),
        ("OTHER".to_owned(), "ignored".to_owned()),
    ];
    let c = Config::from_toml(Path::new("t.toml"), MINIMAL, env).unwrap();
    assert_eq!(c.database.url, "postgres://x/y");
    assert_eq!(c.database.max_connections, 3);
    assert_eq!(c.server.shutdown_drain, Duration::from_secs(5));
}

#[test]
fn bad_env_override_names_the_variable() {
    let env = vec![("CUSTODIAN__SERVER__LISTEN".to_owned(), "nowhere".to_owned())];
    let err = Config::from_toml(Path::new("t.toml"), MINIMAL, env)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("CUSTODIAN__SERVER__LISTEN"), "{err}");
}

#[test]
fn missing_secret_env_is_an_error_naming_the_key() {
    let text = MINIMAL.replace(
        "profile = \"api\"\n\n[[tenants]]",
        "profile = \"api\"\nupstream_key = { env = \"CUSTODIAN_TEST_SURELY_UNSET\" }\n\n[[tenants]]",
    );
    let err = load_err(&text);
    assert!(err.contains("routes[0].upstream_key"), "{err}");
    assert!(err.contains("CUSTODIAN_TEST_SURELY_UNSET"), "{err}");
}

#[test]
fn secret_debug_is_redacted() {
    assert_eq!(format!("{:?}", Secret::new("sk-live")), "Secret(*****)");
}

#[test]
fn policy_version_changes_with_policy_only() {
    let a = load(MINIMAL).unwrap().policy_version;
    let b = load(&format!("{MINIMAL}\n[server]\nshutdown_drain = \"1s\"\n"))
        .unwrap()
        .policy_version;
    let c = load(&MINIMAL.replace("2023-03-01", "2024-03-01"))
        .unwrap()
        .policy_version;
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn periodic_intervals_must_be_greater_than_zero() {
    for (section, key) in [
        ("[sweeper]\ninterval = \"0s\"", "sweeper.interval"),
        (
            "[consent]\nrefresh_interval = \"0s\"",
            "consent.refresh_interval",
        ),
        ("[spool]\nreplay_interval = \"0s\"", "spool.replay_interval"),
    ] {
        let err = load_err(&format!("{MINIMAL}\n{section}\n"));
        assert!(
            err.contains(key) && err.contains("greater than zero"),
            "{err}"
        );
    }
}

#[test]
fn capture_compression_is_a_known_level_and_the_cap_one_the_codec_reads_back() {
    let with = |capture: &str| format!("{MINIMAL}\n[capture]\n{capture}\n");
    assert_eq!(load(MINIMAL).unwrap().capture.compression_level, -1);
    for level in [-7, 0, 6] {
        let config = load(&with(&format!("compression_level = {level}"))).unwrap();
        assert_eq!(config.capture.compression_level, level);
    }
    for level in [-8, 7, 19] {
        let err = load_err(&with(&format!("compression_level = {level}")));
        assert!(err.contains("capture.compression_level"), "{err}");
    }
    let err = load_err(&with(
        "max_body_bytes = 268435457\n[server]\nmax_request_body_bytes = 536870912\nmax_buffered_bytes = 1073741824",
    ));
    assert!(
        err.contains("capture.max_body_bytes") && err.contains("at most 268435456"),
        "{err}"
    );
}

#[test]
fn the_console_section_is_checked_where_it_is_wrong() {
    let load = |section: &str| {
        let env = vec![("SECRET".to_owned(), "s3cret-value".to_owned())];
        let text = format!("{MINIMAL}\n{section}\n");
        Config::from_toml(Path::new("test.toml"), &text, env)
    };
    let oidc = |issuer: &str, redirect: &str, mapping: &str| {
        format!(
            "[console.oidc]\nissuer = \"{issuer}\"\nclient_id = \"c\"\nclient_secret = {{ env = \"SECRET\" }}\n\
             redirect_url = \"{redirect}\"\nclaim = \"groups\"\n{mapping}"
        )
    };
    let map =
        "[[console.oidc.principals]]\nvalue = \"g\"\nprincipal = \"p\"\nrole = \"reviewer\"\n";
    let ok = load(&oidc(
        "https://idp.example/",
        "https://admin.example/console/oidc/callback",
        map,
    ))
    .unwrap();
    let console = ok.console;
    assert!(
        console.enabled && console.token_sign_in && !console.secure_cookies,
        "loopback admin listener"
    );
    let oidc_config = console.oidc.unwrap();
    // The issuer is kept exactly: its metadata must name the same string.
    assert_eq!(oidc_config.issuer, "https://idp.example/");
    assert_eq!(
        oidc_config.principals[0].role,
        crate::domain::access::Role::Reviewer
    );
    assert!(!format!("{oidc_config:?}").contains("s3cret-value"));
    let loopback = load(&oidc(
        "http://127.0.0.1:5556",
        "http://localhost:9090/console/oidc/callback",
        map,
    ));
    assert!(
        loopback.is_ok(),
        "plain HTTP on loopback is for tests and one-machine setups"
    );
    let public = load("[server]\nadmin_listen = \"0.0.0.0:9090\"\n").unwrap();
    assert!(public.console.secure_cookies, "Secure off loopback");
    for (section, key) in [
        (
            oidc(
                "http://idp.example",
                "https://a.example/console/oidc/callback",
                map,
            ),
            "console.oidc.issuer",
        ),
        (
            oidc(
                "https://idp.example",
                "http://a.example/console/oidc/callback",
                map,
            ),
            "console.oidc.redirect_url",
        ),
        (
            oidc("https://idp.example", "https://a.example/elsewhere", map),
            "console.oidc.redirect_url",
        ),
        (
            oidc(
                "https://idp.example",
                "https://a.example/console/oidc/callback",
                "",
            ),
            "console.oidc.principals",
        ),
        (
            oidc(
                "https://idp.example",
                "https://a.example/console/oidc/callback",
                &map.replace("reviewer", "emperor"),
            ),
            "console.oidc.principals.role",
        ),
        (
            "[console]\nidle_timeout = \"10s\"".to_owned(),
            "console.idle_timeout",
        ),
        (
            "[console]\nidle_timeout = \"2h\"\nabsolute_timeout = \"1h\"".to_owned(),
            "console.idle_timeout",
        ),
        (
            "[console]\ntoken_sign_in = false".to_owned(),
            "console.token_sign_in",
        ),
    ] {
        let err = load(&section).unwrap_err().to_string();
        assert!(err.contains(key), "{section}: {err}");
    }
}

//! Start-up validation: each misconfiguration is refused with an error naming what to fix.

use crate::support::{component, config_text};
use std::path::Path;
use switchyard::Switchyard;
use switchyard::config::Config;

fn parse(extra: &str) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    Config::parse(
        &config_text(
            &format!("sqlite://{}", dir.path().join("x.db").display()),
            extra,
        ),
        Path::new("bad.toml"),
        dir.path().to_owned(),
    )
    .map_err(|e| e.to_string())
}

#[test]
fn event_type_routed_to_two_services_is_refused() {
    let err = parse(&format!(
        "[[routes]]\nevent_type = \"probe.run\"\nservice = \"sink\"\ncomponent = \"{}\"\n",
        component("probe").display()
    ))
    .unwrap_err();
    assert!(
        err.contains("\"probe.run\"") && err.contains("\"probe\"") && err.contains("\"sink\""),
        "{err}"
    );
}

#[test]
fn route_to_unknown_service_is_refused() {
    let err = parse(&format!(
        "[[routes]]\nevent_type = \"x.y\"\nservice = \"billing\"\ncomponent = \"{}\"\n",
        component("probe").display()
    ))
    .unwrap_err();
    assert!(
        err.contains("\"x.y\"") && err.contains("unknown service \"billing\""),
        "{err}"
    );
}

#[test]
fn missing_component_file_is_refused() {
    let err = parse(
        "[[routes]]\nevent_type = \"x.y\"\nservice = \"sink\"\ncomponent = \"nowhere/x.wasm\"\n",
    )
    .unwrap_err();
    assert!(
        err.contains("\"x.y\"") && err.contains("\"sink\"") && err.contains("nowhere/x.wasm"),
        "{err}"
    );
}

#[test]
fn typo_in_a_key_is_refused_with_its_location() {
    let err = parse("[consumer]\nbatch_sise = 3\n").unwrap_err();
    assert!(
        err.contains("batch_sise") && err.contains("bad.toml"),
        "{err}"
    );
}

#[tokio::test]
async fn invalid_component_file_stops_the_host_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm not really").unwrap();
    let text = config_text(
        &format!("sqlite://{}", dir.path().join("x.db").display()),
        &format!(
            "[[routes]]\nevent_type = \"x.y\"\nservice = \"sink\"\ncomponent = \"{}\"\n",
            garbage.display()
        ),
    );
    let config = Config::parse(&text, Path::new("t.toml"), dir.path().to_owned()).unwrap();
    let host = Switchyard::open(config).await.unwrap();
    let err = match host.start(host.configured_transport().await.unwrap()).await {
        Ok(_) => panic!("a host with a garbage component must not start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("\"x.y\"") && err.contains("\"sink\"") && err.contains("garbage.wasm"),
        "{err}"
    );
}

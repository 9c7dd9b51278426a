//! `docker-compose.yml` checked without a Docker engine: it parses, it runs
//! PostgreSQL, Kafka and each service from its own binary of the image the
//! `Dockerfile` builds, the services reach each other at their compose
//! addresses, and every variable it sets on a service is one that service
//! reads.
//!
//! What a service reads is derived from the source, so the check cannot drift:
//! the binary's package and its path dependencies (from `cargo metadata`) are
//! scanned, and every SCREAMING_CASE string literal in a file that calls
//! `env::var` counts as a variable that binary reads, as does `RUST_LOG` where
//! tracing-subscriber's default filter is built. That is generous (an error
//! code such as `"INTERNAL"` beside an `env::var` call counts too) but never
//! misses a variable, and a name set in the compose file that appears in none
//! of those files fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

/// Our services in the compose file, with the binary each must run.
const SERVICES: [(&str, &str); 5] = [
    ("tenant", "tenant-subgraph"),
    ("fact", "fact-subgraph"),
    ("org", "org-subgraph"),
    ("todo", "todo-subgraph"),
    ("gateway", "gateway"),
];

/// The compose services of the infrastructure our services need.
const POSTGRES: &str = "postgres";
const KAFKA: &str = "kafka";

/// The part of a compose file these checks read; the rest is ignored.
#[derive(Debug, Deserialize)]
struct ComposeFile {
    services: BTreeMap<String, Service>,
    #[serde(default)]
    volumes: BTreeMap<String, Yaml>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Service {
    image: Option<String>,
    build: Option<Yaml>,
    command: Option<Words>,
    entrypoint: Option<Words>,
    environment: Environment,
    env_file: Option<Yaml>,
    depends_on: DependsOn,
    healthcheck: Option<Yaml>,
    volumes: Vec<Yaml>,
}

/// A command as one string or as a list of words.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Words {
    Line(String),
    List(Vec<String>),
}

/// `environment:` as a mapping or as a list of `KEY=VALUE`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Environment {
    Map(BTreeMap<String, Option<Yaml>>),
    List(Vec<String>),
}

/// `depends_on:` as a list of names or as a mapping with conditions.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DependsOn {
    List(Vec<String>),
    Map(BTreeMap<String, Dependency>),
}

#[derive(Debug, Deserialize)]
struct Dependency {
    condition: Option<String>,
}

impl Default for Environment {
    fn default() -> Self {
        Self::Map(BTreeMap::new())
    }
}

impl Default for DependsOn {
    fn default() -> Self {
        Self::List(Vec::new())
    }
}

impl Service {
    /// The program the container starts: the first word of the entrypoint,
    /// else of the command.
    fn program(&self) -> Option<String> {
        let words = self.entrypoint.as_ref().or(self.command.as_ref())?;
        match words {
            Words::Line(line) => line.split_whitespace().next().map(str::to_owned),
            Words::List(list) => list.first().cloned(),
        }
    }

    /// The variables it sets, by name; a value-less entry passes the host's
    /// value through and reads as empty here.
    fn variables(&self) -> BTreeMap<String, String> {
        match &self.environment {
            Environment::Map(map) => map
                .iter()
                .map(|(name, value)| (name.clone(), value.as_ref().map(scalar).unwrap_or_default()))
                .collect(),
            Environment::List(list) => list
                .iter()
                .map(|entry| match entry.split_once('=') {
                    Some((name, value)) => (name.to_owned(), value.to_owned()),
                    None => (entry.clone(), String::new()),
                })
                .collect(),
        }
    }

    fn variable(&self, name: &str) -> Option<String> {
        self.variables().remove(name)
    }

    /// The condition it waits for on `dependency`, or `None` when it does not
    /// depend on it (`service_started` for the list form).
    fn waits_for(&self, dependency: &str) -> Option<String> {
        match &self.depends_on {
            DependsOn::List(list) => list
                .iter()
                .any(|name| name == dependency)
                .then(|| "service_started".to_owned()),
            DependsOn::Map(map) => map.get(dependency).map(|entry| {
                entry
                    .condition
                    .clone()
                    .unwrap_or_else(|| "service_started".to_owned())
            }),
        }
    }

    /// `(source, target)` of each mount, in the short or the long syntax.
    fn mounts(&self) -> Vec<(String, String)> {
        self.volumes
            .iter()
            .filter_map(|mount| match mount {
                Yaml::String(short) => {
                    let mut parts = short.split(':');
                    let source = parts.next()?.to_owned();
                    let target = parts.next()?.to_owned();
                    Some((source, target))
                }
                Yaml::Mapping(_) => Some((
                    mount.get("source").map(scalar).unwrap_or_default(),
                    mount.get("target").map(scalar)?,
                )),
                _ => None,
            })
            .collect()
    }
}

/// A scalar as compose reads it: numbers and booleans become their text.
fn scalar(value: &Yaml) -> String {
    match value {
        Yaml::String(text) => text.clone(),
        Yaml::Number(number) => number.to_string(),
        Yaml::Bool(flag) => flag.to_string(),
        _ => String::new(),
    }
}

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The compose file, with YAML merge keys (`<<: *anchor`) applied as compose
/// applies them.
fn compose_file() -> ComposeFile {
    let path = repository().join("docker-compose.yml");
    let text = std::fs::read_to_string(&path).expect("reading docker-compose.yml");
    let mut document: Yaml = serde_yaml_ng::from_str(&text)
        .unwrap_or_else(|error| panic!("docker-compose.yml is not YAML: {error}"));
    document
        .apply_merge()
        .unwrap_or_else(|error| panic!("docker-compose.yml has a bad merge key: {error}"));
    serde_yaml_ng::from_value(document)
        .unwrap_or_else(|error| panic!("docker-compose.yml is not a compose file: {error}"))
}

fn service<'a>(compose: &'a ComposeFile, name: &str) -> &'a Service {
    compose
        .services
        .get(name)
        .unwrap_or_else(|| panic!("docker-compose.yml has no `{name}` service"))
}

/// `text` with every `${…}` interpolation left out, so an address can be
/// read around a `${PASSWORD:?…}` inside it.
fn without_interpolation(text: &str) -> String {
    let mut kept = String::new();
    let mut depth = 0;
    let mut characters = text.chars().peekable();
    while let Some(character) = characters.next() {
        if character == '$' && characters.peek() == Some(&'{') {
            characters.next();
            depth += 1;
        } else if depth > 0 && character == '}' {
            depth -= 1;
        } else if depth == 0 {
            kept.push(character);
        }
    }
    kept
}

/// `(host, port)` of `host:port`.
fn host_and_port(address: &str) -> (String, Option<u16>) {
    match address.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse().ok()),
        None => (address.to_owned(), None),
    }
}

/// The workspace as `cargo metadata` describes it: each package's directory,
/// its bin targets and its path dependencies.
struct Workspace {
    packages: Vec<Package>,
}

struct Package {
    directory: PathBuf,
    binaries: Vec<String>,
    path_dependencies: Vec<PathBuf>,
}

impl Workspace {
    fn load() -> Self {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let output = Command::new(cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .arg("--manifest-path")
            .arg(repository().join("Cargo.toml"))
            .output()
            .expect("running cargo metadata");
        assert!(
            output.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let metadata: Json = serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");

        let packages = metadata["packages"].as_array().expect("packages");
        let packages = packages.iter().map(Package::from_metadata).collect();
        Self { packages }
    }

    fn package_with_binary(&self, binary: &str) -> Option<&Package> {
        self.packages
            .iter()
            .find(|package| package.binaries.iter().any(|name| name == binary))
    }

    fn package_in(&self, directory: &Path) -> Option<&Package> {
        self.packages
            .iter()
            .find(|package| package.directory == directory)
    }

    /// The source directories `binary` is built from: its package's and those
    /// of the workspace packages it depends on, directly or not.
    fn source_directories(&self, binary: &str) -> Vec<PathBuf> {
        let package = self
            .package_with_binary(binary)
            .unwrap_or_else(|| panic!("no workspace package has a binary `{binary}`"));
        let mut seen = BTreeSet::new();
        let mut pending = vec![package.directory.clone()];
        while let Some(directory) = pending.pop() {
            if !seen.insert(directory.clone()) {
                continue;
            }
            if let Some(package) = self.package_in(&directory) {
                pending.extend(package.path_dependencies.iter().cloned());
            }
        }
        seen.into_iter()
            .map(|directory| directory.join("src"))
            .collect()
    }

    /// The environment variables `binary` reads, derived from its sources.
    fn variables_read_by(&self, binary: &str) -> BTreeSet<String> {
        let mut variables = BTreeSet::new();
        for directory in self.source_directories(binary) {
            for file in rust_files(&directory) {
                let source = std::fs::read_to_string(&file).expect("reading a source file");
                variables.extend(variables_read_in(&source));
            }
        }
        variables
    }
}

impl Package {
    fn from_metadata(package: &Json) -> Self {
        let manifest = PathBuf::from(package["manifest_path"].as_str().expect("manifest_path"));
        let targets = package["targets"].as_array().expect("targets");
        let binaries = targets
            .iter()
            .filter(|target| {
                let kinds = target["kind"].as_array().expect("kind");
                kinds.iter().any(|kind| kind == "bin")
            })
            .map(|target| target["name"].as_str().expect("name").to_owned())
            .collect();
        // Only what the binary links: dev and build dependencies are left out.
        let dependencies = package["dependencies"].as_array().expect("dependencies");
        let path_dependencies = dependencies
            .iter()
            .filter(|dependency| dependency["kind"].is_null())
            .filter_map(|dependency| dependency["path"].as_str().map(PathBuf::from))
            .collect();
        Self {
            directory: manifest.parent().expect("a package directory").to_owned(),
            binaries,
            path_dependencies,
        }
    }
}

fn rust_files(directory: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![directory.to_owned()];
    while let Some(directory) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&directory) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The variables one source file reads: when it calls `env::var` (or
/// `var_os`), each SCREAMING_CASE string literal in it, which covers keys
/// passed straight to `env::var` and those passed through a helper, a lookup
/// closure or a table; `RUST_LOG` when it builds tracing-subscriber's
/// `EnvFilter` from the default variable.
fn variables_read_in(source: &str) -> BTreeSet<String> {
    let mut variables = BTreeSet::new();
    if source.contains("from_default_env") {
        variables.insert("RUST_LOG".to_owned());
    }
    if !source.contains("env::var") {
        return variables;
    }

    // A literal is a quote, a name, and a quote right after it; a longer
    // string such as "DATABASE_URL is invalid" is not one.
    for (start, _) in source.match_indices('"') {
        let rest = &source[start + 1..];
        let length = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..length];
        let starts_with_letter = name.starts_with(|c: char| c.is_ascii_uppercase());
        if starts_with_letter && rest[length..].starts_with('"') {
            variables.insert(name.to_owned());
        }
    }
    variables
}

/// The binaries the Dockerfile builds into the image: its `ARG BINARIES`.
fn dockerfile_binaries(dockerfile: &str) -> Vec<String> {
    let line = dockerfile
        .lines()
        .find_map(|line| line.trim().strip_prefix("ARG BINARIES="))
        .expect("the Dockerfile has no `ARG BINARIES=\"…\"` line");
    line.trim_matches('"')
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The sources the Dockerfile's build stage copies into the image.
fn dockerfile_copies(dockerfile: &str) -> Vec<String> {
    dockerfile
        .lines()
        .filter_map(|line| line.trim().strip_prefix("COPY "))
        .filter(|arguments| !arguments.contains("--from"))
        .flat_map(|arguments| {
            let words: Vec<&str> = arguments.split_whitespace().collect();
            let sources = &words[..words.len().saturating_sub(1)];
            sources
                .iter()
                .filter(|word| !word.starts_with("--"))
                .map(|word| word.trim_end_matches('/').to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_compose_file_runs_postgres_kafka_and_each_service_from_its_own_binary() {
    let compose = compose_file();
    let workspace = Workspace::load();
    let dockerfile = std::fs::read_to_string(repository().join("Dockerfile")).expect("Dockerfile");
    let built = dockerfile_binaries(&dockerfile);

    let postgres = service(&compose, POSTGRES);
    let postgres_image = postgres.image.as_deref().unwrap_or_default();
    assert!(
        postgres_image.starts_with("postgres:"),
        "postgres runs {postgres_image}"
    );
    let kafka = service(&compose, KAFKA);
    let kafka_image = kafka.image.as_deref().unwrap_or_default();
    assert!(
        kafka_image.starts_with("apache/kafka:"),
        "kafka runs {kafka_image}"
    );
    // KRaft: the broker is its own controller, and there is no ZooKeeper.
    let roles = kafka.variable("KAFKA_PROCESS_ROLES").unwrap_or_default();
    assert!(
        roles.contains("controller"),
        "KAFKA_PROCESS_ROLES is {roles:?}"
    );
    assert!(
        !compose
            .services
            .keys()
            .any(|name| name.contains("zookeeper")),
        "a ZooKeeper service is not needed in KRaft mode"
    );

    // Each of ours runs its own binary from our image, which the Dockerfile
    // builds; any other service built here must be one of ours.
    let ours: BTreeMap<&str, &str> = SERVICES.into_iter().collect();
    for (name, service) in &compose.services {
        let built_here = service.build.is_some();
        assert!(
            !built_here || ours.contains_key(name.as_str()),
            "service `{name}` runs our image but is not one of {SERVICES:?}"
        );
    }
    for (name, binary) in SERVICES {
        let service = service(&compose, name);
        assert!(
            service.build.is_some(),
            "`{name}` is not built from the Dockerfile"
        );
        assert_eq!(
            service.program().as_deref(),
            Some(binary),
            "the program `{name}` runs"
        );
        assert!(
            workspace.package_with_binary(binary).is_some(),
            "`{name}` runs `{binary}`, which is not a binary of the workspace"
        );
        assert!(
            built.iter().any(|built| built == binary),
            "the Dockerfile does not build `{binary}` (its ARG BINARIES is {built:?})"
        );
        assert!(service.healthcheck.is_some(), "`{name}` has no healthcheck");
    }
}

#[test]
fn the_image_is_built_from_every_workspace_package() {
    let workspace = Workspace::load();
    let dockerfile = std::fs::read_to_string(repository().join("Dockerfile")).expect("Dockerfile");
    let copies = dockerfile_copies(&dockerfile);
    let root = repository();

    // Cargo refuses to build when a member's manifest is missing, so every
    // package directory must be copied, the root's manifest, lock and sources
    // included.
    let mut needed: Vec<String> = vec!["Cargo.toml".into(), "Cargo.lock".into(), "src".into()];
    for package in &workspace.packages {
        let relative = package
            .directory
            .strip_prefix(&root)
            .expect("a workspace member");
        if !relative.as_os_str().is_empty() {
            needed.push(relative.to_string_lossy().into_owned());
        }
    }
    for path in needed {
        let covered = copies
            .iter()
            .any(|copied| path == *copied || path.starts_with(&format!("{copied}/")));
        assert!(
            covered,
            "the Dockerfile does not copy `{path}` (it copies {copies:?})"
        );
    }
}

#[test]
fn every_variable_set_on_a_service_is_one_its_binary_reads() {
    let compose = compose_file();
    let workspace = Workspace::load();

    // The derivation must tell binaries apart, or the check below would pass
    // anything: the gateway is built without the tenancy kit.
    let gateway_reads = workspace.variables_read_by("gateway");
    let tenant_reads = workspace.variables_read_by("tenant-subgraph");
    assert!(gateway_reads.contains("GATEWAY_HOP_SECRET") && tenant_reads.contains("DATABASE_URL"));
    assert!(
        !gateway_reads.contains("DATABASE_URL"),
        "the gateway reads {gateway_reads:?}"
    );

    let mut unread = Vec::new();
    for (name, binary) in SERVICES {
        let service = service(&compose, name);
        // Variables in an env file would escape this check.
        assert!(
            service.env_file.is_none(),
            "`{name}` uses env_file: set its variables under `environment:` instead"
        );
        let reads = workspace.variables_read_by(binary);
        for variable in service.variables().into_keys() {
            if !reads.contains(&variable) {
                unread.push(format!(
                    "{name} ({binary}) does not read {variable}; it reads {reads:?}"
                ));
            }
        }
    }
    assert!(
        unread.is_empty(),
        "docker-compose.yml sets unread variables:\n{}",
        unread.join("\n")
    );
}

#[test]
fn the_services_reach_postgres_and_kafka_at_their_compose_addresses() {
    let compose = compose_file();
    let kafka = service(&compose, KAFKA);
    let advertised = kafka
        .variable("KAFKA_ADVERTISED_LISTENERS")
        .unwrap_or_default();
    let advertised: Vec<&str> = advertised
        .split(',')
        .filter_map(|listener| listener.split_once("://").map(|(_, address)| address))
        .collect();

    for (name, _) in SERVICES {
        let service = service(&compose, name);

        if let Some(url) = service.variable("DATABASE_URL") {
            let url = without_interpolation(&url);
            let (scheme, rest) = url.split_once("://").expect("DATABASE_URL is a URL");
            assert!(
                scheme.starts_with("postgres"),
                "{name}: DATABASE_URL is {url}"
            );
            let authority = rest.split('/').next().unwrap_or_default();
            let address = authority
                .rsplit_once('@')
                .map_or(authority, |(_, address)| address);
            let (host, port) = host_and_port(address);
            assert_eq!(host, POSTGRES, "{name}: DATABASE_URL names another host");
            assert!(
                matches!(port, None | Some(5432)),
                "{name}: DATABASE_URL port {port:?}"
            );
            let waits = service.waits_for(POSTGRES);
            assert_eq!(
                waits.as_deref(),
                Some("service_healthy"),
                "{name} on postgres"
            );
        }

        if let Some(brokers) = service.variable("KAFKA_BROKERS") {
            for broker in brokers.split(',').map(str::trim) {
                assert!(
                    advertised.contains(&broker),
                    "{name}: KAFKA_BROKERS has {broker}, Kafka advertises {advertised:?}"
                );
                assert_eq!(host_and_port(broker).0, KAFKA, "{name}: broker {broker}");
            }
            let waits = service.waits_for(KAFKA);
            assert_eq!(waits.as_deref(), Some("service_healthy"), "{name} on kafka");
        }
    }
    for dependency in [POSTGRES, KAFKA] {
        assert!(
            service(&compose, dependency).healthcheck.is_some(),
            "{dependency} healthcheck"
        );
    }

    // The subgraphs need both, and nothing else in the file provides them.
    for name in ["tenant", "fact", "org", "todo"] {
        let variables = service(&compose, name).variables();
        assert!(
            variables.contains_key("DATABASE_URL"),
            "{name} has no DATABASE_URL"
        );
        assert!(
            variables.contains_key("KAFKA_BROKERS"),
            "{name} has no KAFKA_BROKERS"
        );
    }
}

#[test]
fn the_gateway_calls_each_subgraph_where_it_listens() {
    let compose = compose_file();
    let gateway = service(&compose, "gateway");

    for (name, _) in SERVICES.into_iter().filter(|(name, _)| *name != "gateway") {
        let prefix = name.to_uppercase();
        // Inside a container a service must listen on every interface.
        let listen = service(&compose, name)
            .variable(&format!("{prefix}_ADDR"))
            .unwrap_or_else(|| panic!("{name} sets no {prefix}_ADDR"));
        let (listen_host, listen_port) = host_and_port(&listen);
        assert_eq!(listen_host, "0.0.0.0", "{name} listens on {listen}");

        let variable = format!("{prefix}_SUBGRAPH_URL");
        let url = gateway
            .variable(&variable)
            .unwrap_or_else(|| panic!("the gateway has no {variable}"));
        let authority = url
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("{variable} is not an http:// URL: {url}"));
        assert_eq!(
            host_and_port(authority),
            (name.to_owned(), listen_port),
            "{variable}"
        );
        let waits = gateway.waits_for(name);
        assert_eq!(
            waits.as_deref(),
            Some("service_healthy"),
            "the gateway on {name}"
        );
    }
    let listen = gateway.variable("GATEWAY_ADDR").unwrap_or_default();
    assert_eq!(
        host_and_port(&listen).0,
        "0.0.0.0",
        "the gateway listens on {listen:?}"
    );
}

#[test]
fn files_a_service_keeps_are_on_named_volumes() {
    let compose = compose_file();
    for (name, _) in SERVICES {
        let service = service(&compose, name);
        let mounts = service.mounts();
        for (variable, path) in service.variables() {
            if !variable.ends_with("_FILE") {
                continue;
            }
            // A file outside a named volume is lost with the container.
            let volume = mounts
                .iter()
                .find(|(_, target)| Path::new(&path).starts_with(target))
                .map(|(source, _)| source.clone());
            let volume =
                volume.unwrap_or_else(|| panic!("{name}: {variable}={path} is on no volume"));
            assert!(
                compose.volumes.contains_key(&volume),
                "{name}: {variable} is on `{volume}`, which is not a named volume of the file"
            );
        }
    }
}

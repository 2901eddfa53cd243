//! The servers `brook bench-compare` measures: Brook itself (fsync and async), the ceilings
//! (`brook bench-noop`, storing nothing or only syncing) and the Kinesis emulators that
//! `make bench-peers` installs.

use std::path::{Path, PathBuf};

/// How to start one server under test.
#[derive(Debug, Clone)]
pub struct Target {
    /// Name in the table.
    pub name: String,
    /// Its persistence, stated in the table.
    pub persistence: String,
    /// Program and arguments; `{port}` and `{dir}` are replaced.
    pub command: Vec<String>,
    /// Environment; `{port}` and `{dir}` are replaced.
    pub env: Vec<(String, String)>,
    /// Working directory, when the server needs one.
    pub cwd: Option<PathBuf>,
}

/// The targets `make bench-compare` knows, given the folder peers were installed into.
pub fn targets(brook: &Path, peers: &Path) -> Vec<Target> {
    let peers = &std::fs::canonicalize(peers).unwrap_or_else(|_| peers.to_path_buf());
    let s = |v: &str| v.to_owned();
    let path = |p: &str| peers.join(p).display().to_string();
    let brook = brook.display().to_string();
    let brook_target = |durability: &str| Target {
        name: format!("brook-{durability}"),
        persistence: format!("disk, {durability}"),
        command: vec![
            brook.clone(),
            s("broker"),
            s("--listen"),
            s("127.0.0.1:{port}"),
            s("--metrics-listen"),
            s("127.0.0.1:0"),
            s("--data-dir"),
            s("{dir}"),
            s("--durability"),
            s(durability),
            s("--no-quotas"),
            s("--stream-transition-ms"),
            s("0"),
        ],
        env: vec![],
        cwd: None,
    };
    // `brook bench-noop`, storing nothing or (with a journal folder) only syncing.
    let ceiling = |name: &str, persistence: &str, options: &[&str]| Target {
        name: s(name),
        persistence: s(persistence),
        command: [brook.as_str(), "bench-noop", "--listen", "127.0.0.1:{port}"]
            .iter()
            .chain(options)
            .map(|a| a.to_string())
            .collect(),
        env: vec![],
        cwd: None,
    };
    vec![
        brook_target("fsync"),
        brook_target("async"),
        ceiling("noop-ceiling", "none (decodes and answers only)", &[]),
        ceiling(
            "fsync-ceiling",
            "one file, group fdatasync, nothing else",
            &["--journal-dir", "{dir}"],
        ),
        ceiling(
            "fsync-ceiling-overlapped",
            "one file, each put syncs on its own thread",
            &["--journal-dir", "{dir}", "--sync", "each"],
        ),
        Target {
            name: s("ferrokinesis"),
            persistence: s("memory"),
            command: ferro(&path("ferrokinesis/bin/ferrokinesis"), false),
            env: vec![],
            cwd: None,
        },
        Target {
            name: s("ferrokinesis-wal"),
            persistence: s("disk, WAL + snapshots"),
            command: ferro(&path("ferrokinesis/bin/ferrokinesis"), true),
            env: vec![],
            cwd: None,
        },
        Target {
            name: s("kinesalite"),
            persistence: s("memory"),
            command: vec![
                s("node"),
                path("node/node_modules/kinesalite/cli.js"),
                s("--port"),
                s("{port}"),
                s("--createStreamMs"),
                s("0"),
                s("--deleteStreamMs"),
                s("0"),
                s("--updateStreamMs"),
                s("0"),
                s("--shardLimit"),
                s("100000"),
            ],
            env: vec![],
            cwd: None,
        },
        Target {
            name: s("kinesis-mock"),
            persistence: s("memory"),
            command: vec![s("node"), path("node/node_modules/kinesis-local/main.js")],
            // kinesis-mock reads its TLS keystore (server.json) from the working directory.
            cwd: Some(peers.join("node/node_modules/kinesis-local")),
            env: vec![
                (s("KINESIS_MOCK_PLAIN_PORT"), s("{port}")),
                (s("KINESIS_MOCK_TLS_PORT"), s("{tlsport}")),
                (s("CREATE_STREAM_DURATION"), s("0ms")),
                (s("DELETE_STREAM_DURATION"), s("0ms")),
                (s("SHARD_LIMIT"), s("100000")),
                (s("LOG_LEVEL"), s("WARN")),
            ],
        },
        Target {
            name: s("moto"),
            persistence: s("memory"),
            command: vec![path("venv/bin/moto_server"), s("-p"), s("{port}")],
            env: vec![],
            cwd: None,
        },
    ]
}

fn ferro(binary: &str, durable: bool) -> Vec<String> {
    let mut command: Vec<String> = [
        binary,
        "--port",
        "{port}",
        "--create-stream-ms",
        "0",
        "--delete-stream-ms",
        "0",
        "--update-stream-ms",
        "0",
        "--shard-limit",
        "100000",
        "--log-level",
        "error",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if durable {
        command.extend(["--state-dir".to_owned(), "{dir}".to_owned()]);
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_its_own_name_and_the_fsync_ceilings_journal_in_their_folder() {
        let all = targets(Path::new("/opt/brook"), Path::new("peers"));
        let mut names: Vec<&str> = all.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len(), "--only picks targets by name");
        let command = |name: &str| {
            all.iter()
                .find(|t| t.name == name)
                .map(|t| t.command.join(" "))
                .unwrap_or_default()
        };
        assert_eq!(
            command("noop-ceiling"),
            "/opt/brook bench-noop --listen 127.0.0.1:{port}"
        );
        assert_eq!(
            command("fsync-ceiling"),
            "/opt/brook bench-noop --listen 127.0.0.1:{port} --journal-dir {dir}"
        );
        assert_eq!(
            command("fsync-ceiling-overlapped"),
            "/opt/brook bench-noop --listen 127.0.0.1:{port} --journal-dir {dir} --sync each"
        );
    }
}

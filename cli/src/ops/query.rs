//! `query`: [`plan`] targets and describe the action graph without running it: each node's
//! kind, label, inputs, short key and whether the action cache holds it.
//!
//! A node's key is known when all its inputs are cached (their outputs are known), so the
//! nodes are probed in topological order against the action cache ([`lkb_engine::probe`]),
//! exactly as a build would find them before running anything. Otherwise the key is `?`.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::errors::Context;
use lkb_engine::{ActionKey, CacheState, NodeProbe, probe};
use serde_json::{Value, json};

use crate::ops::plan::{Plan, PlanRequest, plan};
use crate::settings::Settings;

/// Version of the `--output json` document (its `"v"`); bumped when a field is removed or
/// changes meaning, not when one is added.
pub const QUERY_JSON_VERSION: u32 = 1;

/// One action of the graph.
#[derive(Debug, Clone)]
pub struct QueryNode {
    /// The node's index in the graph (`#id`).
    pub id: usize,
    pub kind: &'static str,
    pub label: String,
    pub identity: String,
    /// The ids of the nodes whose outputs it takes, in order.
    pub inputs: Vec<usize>,
    /// The action key, when every input is cached.
    pub key: Option<ActionKey>,
    pub state: CacheState,
}

/// One output file of a target and the node that produces it.
#[derive(Debug, Clone)]
pub struct QueryOutputFile {
    pub file: String,
    pub node: usize,
    pub artifact: String,
    /// Further (node, artifact) pairs the file holds after the first, in order (the initrd
    /// of `kernel+initrd`: its segments).
    pub more: Vec<(usize, String)>,
}

/// One target and its output files.
#[derive(Debug, Clone)]
pub struct QueryTarget {
    pub label: String,
    pub dir: PathBuf,
    pub outputs: Vec<QueryOutputFile>,
}

/// The planned graph of some targets, with what the store holds.
#[derive(Debug, Clone)]
pub struct GraphReport {
    pub targets: Vec<QueryTarget>,
    pub nodes: Vec<QueryNode>,
}

/// Plans `req` and probes the store for every node; runs no action and writes no lock file.
pub async fn query(
    settings: &Settings,
    req: &PlanRequest,
    notify: &(dyn Fn(&str) + Sync),
) -> crate::errors::Result<GraphReport> {
    let Plan {
        store,
        graph,
        targets,
        ..
    } = plan(settings, req, notify).await?;
    let (graph, probes) = crate::errors::joined(
        tokio::task::spawn_blocking(move || {
            let probes = probe(&graph, &store);
            (graph, probes)
        })
        .await,
        "the cache lookups did not complete",
    )?;
    let probes = probes.context("cannot look up the action cache")?;
    let nodes = graph
        .node_ids()
        .zip(probes)
        .map(|(id, NodeProbe { key, state })| {
            let action = graph.action(id).expect("node ids come from the same graph");
            QueryNode {
                id: id.index(),
                kind: action.kind(),
                label: action.label(),
                identity: action.identity(),
                inputs: graph.inputs(id).iter().map(|input| input.index()).collect(),
                key,
                state,
            }
        })
        .collect();
    let targets = targets
        .into_iter()
        .map(|target| QueryTarget {
            label: target.label,
            dir: target.dir,
            outputs: target
                .outputs
                .into_iter()
                .map(|spec| QueryOutputFile {
                    more: spec
                        .more
                        .iter()
                        .map(|(node, artifact)| (node.index(), artifact.clone()))
                        .collect(),
                    file: spec.file_name,
                    node: spec.node.index(),
                    artifact: spec.artifact,
                })
                .collect(),
        })
        .collect();
    Ok(GraphReport { targets, nodes })
}

impl QueryNode {
    /// The first 12 hex digits of the key, or `?`.
    pub fn short_key(&self) -> String {
        self.key.map_or_else(|| "?".to_owned(), |key| key.short())
    }

    /// `cached`, `not cached` (also when the key is not known yet) or `damaged`.
    pub fn state_text(&self) -> &'static str {
        match self.state {
            CacheState::Cached => "cached",
            CacheState::NotCached | CacheState::Unknown => "not cached",
            CacheState::Damaged { .. } => "damaged",
        }
    }

    fn state_name(&self) -> &'static str {
        match self.state {
            CacheState::Cached => "cached",
            CacheState::NotCached => "not-cached",
            CacheState::Damaged { .. } => "damaged",
            CacheState::Unknown => "unknown",
        }
    }
}

/// Quotes a string for DOT: `"…"` with `\` and `"` escaped (newlines become `\n`).
fn dot_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

impl GraphReport {
    /// Nodes in the graph, and how many of them are cached.
    pub fn counts(&self) -> (usize, usize) {
        let cached = self.nodes.iter().filter(|n| n.state.is_cached()).count();
        (self.nodes.len(), cached)
    }

    /// One line per node, `#ID KIND KEY STATE LABEL [<- #INPUT…]`, in topological order;
    /// then, per target, its output files and the nodes that produce them.
    pub fn text(&self) -> String {
        let id_width = self
            .nodes
            .last()
            .map_or(2, |node| format!("#{}", node.id).len());
        let kind_width = self.nodes.iter().map(|n| n.kind.len()).max().unwrap_or(0);
        let mut out = String::new();
        for node in &self.nodes {
            let id = format!("#{}", node.id);
            let _ = write!(
                out,
                "{id:<id_width$} {:<kind_width$} {:<12} {:<10} {}",
                node.kind,
                node.short_key(),
                node.state_text(),
                node.label,
            );
            if !node.inputs.is_empty() {
                out.push_str(" <-");
                for input in &node.inputs {
                    let _ = write!(out, " #{input}");
                }
            }
            out.push('\n');
        }
        for target in &self.targets {
            let _ = writeln!(out, "\n{} → {}", target.label, target.dir.display());
            let width = target
                .outputs
                .iter()
                .map(|o| o.file.len())
                .max()
                .unwrap_or(0);
            for output in &target.outputs {
                let more: String = output
                    .more
                    .iter()
                    .map(|(node, artifact)| format!(" + #{node} {artifact}"))
                    .collect();
                let _ = writeln!(
                    out,
                    "  {:<width$} <- #{} {}{more}",
                    output.file, output.node, output.artifact
                );
            }
        }
        out.truncate(out.trim_end().len());
        out
    }

    /// A Graphviz digraph: one box per node (kind, label, short key and state; filled green
    /// when cached), an edge from each input to its dependent, and a note per output file.
    pub fn dot(&self) -> String {
        let mut out = String::from(
            "digraph lkb {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n",
        );
        for node in &self.nodes {
            let label = format!(
                "{}\n{}\n{} {}",
                node.kind,
                node.label,
                node.short_key(),
                node.state_text()
            );
            let fill = match node.state {
                CacheState::Cached => "#dff0d8",
                CacheState::Damaged { .. } => "#f2dede",
                CacheState::NotCached | CacheState::Unknown => "#ffffff",
            };
            let _ = writeln!(
                out,
                "  n{} [label={}, style=filled, fillcolor={}];",
                node.id,
                dot_string(&label),
                dot_string(fill)
            );
        }
        for node in &self.nodes {
            for input in &node.inputs {
                let _ = writeln!(out, "  n{input} -> n{};", node.id);
            }
        }
        for (t, target) in self.targets.iter().enumerate() {
            for (o, output) in target.outputs.iter().enumerate() {
                let label = format!("{}\n{}", target.label, output.file);
                let _ = writeln!(
                    out,
                    "  out{t}_{o} [shape=note, label={}];\n  n{} -> out{t}_{o} [style=dashed];",
                    dot_string(&label),
                    output.node
                );
                for (node, _) in &output.more {
                    let _ = writeln!(out, "  n{node} -> out{t}_{o} [style=dashed];");
                }
            }
        }
        out.push('}');
        out
    }

    /// The versioned JSON document described in docs/cli.md.
    pub fn json(&self) -> Value {
        let (total, cached) = self.counts();
        let nodes: Vec<Value> = self
            .nodes
            .iter()
            .map(|node| {
                let mut value = json!({
                    "id": node.id,
                    "kind": node.kind,
                    "label": node.label,
                    "identity": node.identity,
                    "inputs": node.inputs,
                    "key": node.key.map(|key| key.to_string()),
                    "short_key": node.key.map(|key| key.short()),
                    "cached": node.state.is_cached(),
                    "state": node.state_name(),
                });
                if let CacheState::Damaged { missing } = &node.state {
                    value["missing_blob"] = json!(missing.digest.to_string());
                }
                value
            })
            .collect();
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|target| {
                json!({
                    "label": target.label,
                    "dir": target.dir,
                    "outputs": target.outputs.iter().map(|output| json!({
                        "file": output.file,
                        "node": output.node,
                        "artifact": output.artifact,
                        "more": output.more.iter().map(|(node, artifact)| json!({
                            "node": node,
                            "artifact": artifact,
                        })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "v": QUERY_JSON_VERSION,
            "targets": targets,
            "nodes": nodes,
            "summary": { "total": total, "cached": cached, "not_cached": total - cached },
        })
    }
}

#[cfg(test)]
mod tests {
    use lkb_store::{BlobDigest, BlobRef};

    use super::*;

    fn report() -> GraphReport {
        let key = |byte: u8| Some(ActionKey::from_bytes([byte; 32]));
        let node = |id, kind, label: &str, inputs: Vec<usize>, key, state| QueryNode {
            id,
            kind,
            label: label.to_owned(),
            identity: label.to_owned(),
            inputs,
            key,
            state,
        };
        GraphReport {
            targets: vec![QueryTarget {
                label: "//x:y".to_owned(),
                dir: PathBuf::from("lkb-out/x"),
                outputs: vec![QueryOutputFile {
                    file: "y-initrd.img".to_owned(),
                    node: 2,
                    artifact: "initrd".to_owned(),
                    more: Vec::new(),
                }],
            }],
            nodes: vec![
                node(
                    0,
                    "fetch",
                    "fetch \"a\"",
                    vec![],
                    key(0xab),
                    CacheState::Cached,
                ),
                node(
                    1,
                    "segment",
                    "segment files",
                    vec![0],
                    key(0xcd),
                    CacheState::Damaged {
                        missing: BlobRef {
                            digest: BlobDigest::of_bytes(b"gone"),
                            size: 4,
                        },
                    },
                ),
                node(2, "initrd", "initrd", vec![0, 1], None, CacheState::Unknown),
            ],
        }
    }

    #[test]
    fn text_has_one_line_per_node_then_outputs() {
        let text = report().text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!("#0 fetch   {} cached     fetch \"a\"", "ab".repeat(6))
        );
        assert_eq!(
            lines[1],
            format!(
                "#1 segment {} damaged    segment files <- #0",
                "cd".repeat(6)
            )
        );
        assert_eq!(
            lines[2],
            "#2 initrd  ?            not cached initrd <- #0 #1"
        );
        assert_eq!(lines[3], "");
        assert_eq!(lines[4], "//x:y → lkb-out/x");
        assert_eq!(lines[5], "  y-initrd.img <- #2 initrd");
        assert_eq!(lines.len(), 6);
    }

    #[test]
    fn dot_escapes_labels_and_has_every_edge() {
        let dot = report().dot();
        assert!(dot.starts_with("digraph lkb {\n"));
        assert!(dot.ends_with('}'));
        assert!(
            dot.contains(r#"label="fetch\nfetch \"a\"\nabababababab cached""#),
            "{dot}"
        );
        for edge in ["n0 -> n1;", "n0 -> n2;", "n1 -> n2;", "n2 -> out0_0"] {
            assert!(dot.contains(edge), "{edge} in {dot}");
        }
    }

    #[test]
    fn json_is_versioned_and_complete() {
        let json = report().json();
        assert_eq!(json["v"], QUERY_JSON_VERSION);
        assert_eq!(json["summary"]["total"], 3);
        assert_eq!(json["summary"]["cached"], 1);
        assert_eq!(json["summary"]["not_cached"], 2);
        assert_eq!(json["nodes"][0]["key"], "ab".repeat(32));
        assert_eq!(json["nodes"][0]["cached"], true);
        assert_eq!(json["nodes"][1]["state"], "damaged");
        assert!(
            json["nodes"][1]["missing_blob"]
                .as_str()
                .is_some_and(|d| d.starts_with("sha256:"))
        );
        assert_eq!(json["nodes"][2]["key"], Value::Null);
        assert_eq!(json["nodes"][2]["short_key"], Value::Null);
        assert_eq!(json["nodes"][2]["state"], "unknown");
        assert_eq!(json["nodes"][2]["inputs"], json!([0, 1]));
        assert_eq!(json["targets"][0]["outputs"][0]["node"], 2);
    }
}

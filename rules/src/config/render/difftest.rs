//! TEMPORARY differential harness (not to be committed).
use super::*;
use std::path::Path;

fn from_json(v: &serde_json::Value) -> Node {
    json_node(v)
}

#[test]
#[ignore]
fn dump_trees() {
    let text = std::fs::read_to_string("/tmp/diff/trees.jsonl").unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        out.push_str(&yaml_v2::to_yaml(&from_json(&v)));
        out.push('\0');
    }
    std::fs::write("/tmp/diff/trees.rust", out).unwrap();
}

#[test]
#[ignore]
fn dump_configs() {
    let list = std::fs::read_to_string("/tmp/diff/configs.txt").unwrap();
    for (n, line) in list.lines().enumerate() {
        let mut configs = Vec::new();
        let mut failed = None;
        for f in line.split_whitespace() {
            let text = std::fs::read_to_string(f).unwrap();
            match crate::config::parse_config(&text, Path::new(f)) {
                Ok(c) => configs.push(c),
                Err(e) => failed = Some(e.to_string()),
            }
        }
        if let Some(e) = failed {
            std::fs::write(format!("/tmp/diff/out/{n}.err"), e).unwrap();
            continue;
        }
        let merged = crate::config::merge(configs).unwrap();
        std::fs::write(format!("/tmp/diff/out/{n}.yaml"), render_metadata(&merged, MetadataFormat::Yaml)).unwrap();
        std::fs::write(format!("/tmp/diff/out/{n}.json"), render_metadata(&merged, MetadataFormat::Json)).unwrap();
    }
}

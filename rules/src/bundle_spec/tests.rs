use std::path::Path;

use super::*;
use crate::config::{IdMap, parse_config};

#[test]
fn dump_cases_tmp() {
    let Ok(dir) = std::fs::read_dir("/tmp/lko/cases") else { return };
    for entry in dir {
        let path = entry.unwrap().path();
        let case: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut text = String::from("onboot:\n");
        for (i, line) in case["yaml"].as_str().unwrap().lines().enumerate() {
            text.push_str(if i == 0 { "  - " } else { "    " });
            text.push_str(line);
            text.push('\n');
        }
        let config = parse_config(&text, Path::new("case.yml")).unwrap();
        let names: Vec<&str> = case["names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let ids = IdMap::from_names(names);
        let input = BundleInput {
            spec: &config.onboot[0],
            image_config: &case["imageConfig"],
            ids: &ids,
            volumes: &[],
            bundle_path: case["bundle"].as_str().unwrap(),
            shared_root: None,
        };
        let out = match bundle_spec(&input) {
            Ok(b) => format!("{}\n=====\n{}", String::from_utf8(b.config_json).unwrap(), String::from_utf8(b.runtime_json).unwrap()),
            Err(e) => format!("ERROR: {e}\n"),
        };
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        std::fs::write(format!("/tmp/lko/out/{name}.rust"), out).unwrap();
    }
}

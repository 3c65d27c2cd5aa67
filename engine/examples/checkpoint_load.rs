//! Times turning an official checkpoint into a model directory: the first load (read, recognise,
//! fill the templates, write the cache entry) and the second (the cached entry found), each
//! followed by opening the directory (sizes and SHA-256 of every file checked).
//!
//!     cargo run --release -p sam2-engine --example checkpoint_load -- CHECKPOINT TEMPLATES CACHE

use std::path::PathBuf;
use std::time::Instant;

use sam2_engine::ModelDir;
use sam2_engine::checkpoint::cache::model_dir_for;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [checkpoint, templates, cache] = args.as_slice() else {
        return Err("usage: checkpoint_load CHECKPOINT TEMPLATES CACHE".into());
    };
    let (checkpoint, templates, cache) = (
        PathBuf::from(checkpoint),
        vec![PathBuf::from(templates)],
        PathBuf::from(cache),
    );
    for label in ["first load", "cached load"] {
        let started = Instant::now();
        let dir = model_dir_for(&checkpoint, &templates, &cache)?;
        let built = started.elapsed();
        let model = ModelDir::open(&dir)?;
        println!(
            "{label}: model directory in {:.2} s, opened (every file hashed) in {:.2} s more: {} {}",
            built.as_secs_f64(),
            (started.elapsed() - built).as_secs_f64(),
            model.manifest().family,
            model.manifest().size
        );
    }
    Ok(())
}

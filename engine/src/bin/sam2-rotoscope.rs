//! The engine's command line. For now one command, `check-model DIR`: everything the engine can
//! check about a model directory without a clip — manifest, file hashes, tensors, the four sessions
//! against the manifest, and one run of each graph on zeros — so an export can be accepted or
//! refused before it reaches a host.

use std::path::PathBuf;
use std::process::ExitCode;

use sam2_engine::model::{GraphName, ModelDir, Runtime};

const USAGE: &str = "usage: sam2-rotoscope check-model MODEL_DIR\n\
    \n\
    check-model   verify a model directory (manifest, hashes, tensors, ONNX sessions, one run per graph)\n\
    \n\
    ONNX Runtime is loaded from $SAM2_ORT_DYLIB, else $ORT_DYLIB_PATH, else the checkout's\n\
    .local/onnxruntime/libonnxruntime.so (put there by bundle/fetch-onnxruntime.sh).";

fn check_model(dir: PathBuf) -> sam2_engine::Result<()> {
    let model = ModelDir::open(&dir)?;
    let m = model.manifest();
    println!(
        "{}: {} {}, S={}, C={}, mem_dim={}, {} files verified",
        model.path().display(),
        m.family,
        m.size,
        m.image_size,
        m.hidden_dim,
        m.mem_dim,
        m.files.len()
    );
    let runtime = Runtime::load_default()?;
    println!("ONNX Runtime: {}", runtime.library_path().display());
    let mut sessions = model.load_sessions(&runtime)?;
    for name in GraphName::ALL {
        let graph = sessions.get_mut(name);
        graph.run_on_zeros()?;
        println!(
            "{name}: {} inputs, {} outputs match the manifest; a run on zeros gave the declared shapes",
            graph.spec().inputs.len(),
            graph.spec().outputs.len()
        );
    }
    println!("ok");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [command, dir] if command == "check-model" => match check_model(PathBuf::from(dir)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

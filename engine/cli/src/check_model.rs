//! `check-model DIR`: accept or refuse a model directory before it reaches a host.

use sam2_engine::model::{GraphName, ModelDir, Runtime};

use crate::args::CheckModelArgs;
use crate::error::CliError;
use crate::report::Report;

/// Returns what was done, for [`Report::finish`].
pub fn run(args: &CheckModelArgs, report: &mut Report) -> Result<String, CliError> {
    if !args.dir.exists() {
        return Err(CliError::ModelMissing {
            path: args.dir.clone(),
        });
    }
    let model = ModelDir::open(&args.dir)?;
    let m = model.manifest();
    report.line(&format!(
        "{}: {} {}, S={}, C={}, mem_dim={}, {} files verified",
        model.path().display(),
        m.family,
        m.size,
        m.image_size,
        m.hidden_dim,
        m.mem_dim,
        m.files.len()
    ));
    let runtime = Runtime::load_default()?;
    report.line(&format!(
        "ONNX Runtime: {}",
        runtime.library_path().display()
    ));
    let mut sessions = model.load_sessions(&runtime)?;
    for name in GraphName::ALL {
        let graph = sessions.get_mut(name);
        graph.run_on_zeros()?;
        report.line(&format!(
            "{name}: {} inputs, {} outputs match the manifest; a run on zeros gave the declared shapes",
            graph.spec().inputs.len(),
            graph.spec().outputs.len()
        ));
    }
    report.line("ok");
    Ok(format!(
        "The model directory {} is usable",
        model.path().display()
    ))
}

//! `check-model DIR`: accept or refuse a model directory before it reaches a host.

use sam2_engine::model::{FastSet, FastTarget, GraphName, GraphSet, ModelDir, Runtime};

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
    // The fast sets are optional; one that is there must be usable, since precision fast would
    // load it. The GPU set runs here wherever the check's runtime places it (the CPU, slowly).
    let mut any = false;
    for target in [FastTarget::Cpu, FastTarget::Gpu] {
        if !target.is_in(&model) {
            continue;
        }
        any = true;
        let fast = FastSet::open(&model, target)?;
        report.line(&format!(
            "{target} fast set: {}, {} files verified",
            fast.summary(),
            fast.manifest().files.len()
        ));
        let mut sessions = model.load_sessions_of(&runtime, &GraphSet::Fast(Box::new(fast)))?;
        for name in GraphName::ALL {
            sessions.get_mut(name).run_on_zeros()?;
        }
        report.line(&format!(
            "{target} fast set: every graph matches the manifest; a run on zeros gave the declared shapes"
        ));
    }
    if !any {
        report
            .line("no fast set (precision fast is unavailable; bundle/exporter/py fast adds them)");
    }
    report.line("ok");
    Ok(format!(
        "The model directory {} is usable",
        model.path().display()
    ))
}

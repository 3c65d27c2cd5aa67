#!/usr/bin/env bash
# Regenerates tests/fixtures (shrunk model, synthetic and photo clips (PNG and JPEG), masks, scripts, reference
# traces, resampling and JPEG decoding reference data, a checkpoint of the test model) and the test
# architecture's graph templates with the
# pinned exporter environment. Deterministic: same versions → same fixtures.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/setup-venv.sh"
"$here/py" fixtures --out "$here/../../tests/fixtures"
# The graph templates of the test architecture (bundle/templates), which the committed test checkpoint fills.
for family in sam2.1 sam2; do
  "$here/py" template --family "$family" --size test --out "$here/../templates"
done

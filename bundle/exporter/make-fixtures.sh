#!/usr/bin/env bash
# Regenerates tests/fixtures (shrunk model, synthetic and photo clips (PNG and JPEG), masks, scripts, reference
# traces, resampling and JPEG decoding reference data) with the
# pinned exporter environment. Deterministic: same versions → same fixtures.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/setup-venv.sh"
"$here/py" fixtures --out "$here/../../tests/fixtures"

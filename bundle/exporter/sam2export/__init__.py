"""Tools that turn the official SAM 2 code into what the Rust engine runs and is held to.

- `export`: an official checkpoint (or seeded random weights) → a model directory of ONNX graphs + manifest;
- `reference`: the official `SAM2VideoPredictor` over a clip and an interaction script → a reference trace;
- `fixtures`: the committed test fixtures (shrunk model, synthetic clips, scripts, traces).

The formats are described in docs/formats.md.
"""

EXPORTER_VERSION = "0.3.0"

"""Export formats and runtimes: ONNX export with parity checks (`onnx`), onnxruntime (`runtime`)."""

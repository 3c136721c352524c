"""The offline default: the model files that ship inside PyPI packages (`models`) and the local llama-server that
serves them as an OpenAI-compatible endpoint (`serve`). Nothing here is needed with a hosted endpoint."""

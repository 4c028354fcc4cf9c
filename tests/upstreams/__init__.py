"""Test upstreams for remote engines: ``mockai`` (a deterministic OpenAI-compatible server with the
deviations of vLLM, SGLang, TGI, llama-server and Ollama), ``chaos`` (a fault-injecting TCP proxy)
and ``launch`` (mockai as a subprocess)."""

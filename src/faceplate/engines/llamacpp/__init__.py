"""llama.cpp chat engine: GGUF loading, continuous-batching scheduler, sampler chains."""

"""`faceplate check`: OpenAI-contract conformance checks for any OpenAI-compatible server, and the
gateway's start-up capability probe (``faceplate.check.probe``) built on the same HTTP helpers."""

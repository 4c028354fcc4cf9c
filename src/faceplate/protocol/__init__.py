"""The OpenAI wire schema: request models (one module per endpoint family) and body parsing."""
